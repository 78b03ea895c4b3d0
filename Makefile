# `make demo` and `make test` bootstrap a virtual environment in .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo lint test bench clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[gui,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/star-har demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/pytest -q

bench: $(STAMP)
	$(VENV)/bin/star-har bench

clean:
	rm -rf $(VENV) build *.egg-info
