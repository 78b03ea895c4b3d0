"""The one table of inference engines (stdlib only): names, devices, half precision, and what
``auto`` picks. The command-line choices, the GUI's engine list, automatic selection and the
fp16 check all read it.

Automatic choice (measured with ``star-har bench``, see README):

* CUDA: ``tensorrt`` when the ``tensorrt`` package imports, else ``torch`` (``torch.compile``
  and fp16 are the user's to ask for, since compiling takes a while).
* CPU, pose-only models: ``onnxruntime`` when installed, else ``torch``. On the quiet 2-core
  development machine ONNX Runtime ran the shipped pose transformer in 12 ms against 20 ms. The
  first use exports the checkpoint to ONNX (about 30 s on 2 cores), cached by model fingerprint.
* CPU, RGB models: ``torch``. Their time goes into the 3-D CNN backbone, where PyTorch's
  convolutions were 15-25 % faster than ONNX Runtime's on the same quiet machine.
* ``bf16`` (bfloat16 autocast, about 40 % off an RGB window on a CPU with AVX-512 BF16) and
  ``compile`` exist only in ``torch``, so asking for them makes ``auto`` mean ``torch``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from star_har.errors import InvalidInputError

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class EngineInfo:
    """name: what ``--engine`` takes. library: the package that must import. devices: where it
    runs. Every engine has a half-precision mode on CUDA (ONNX Runtime's needs its TensorRT
    execution provider, which the engine checks when it starts)."""

    name: str
    library: str
    devices: tuple[str, ...]


ENGINES: tuple[EngineInfo, ...] = (
    EngineInfo("torch", "torch", ("cpu", "cuda")),
    EngineInfo("onnxruntime", "onnxruntime", ("cpu", "cuda")),
    EngineInfo("tensorrt", "tensorrt", ("cuda",)),
)
#: ``auto``'s preferences, first importable wins: (device, model reads RGB) -> engine names.
AUTO_ORDER: dict[tuple[str, bool], tuple[str, ...]] = {
    ("cuda", False): ("tensorrt", "torch"), ("cuda", True): ("tensorrt", "torch"),
    ("cpu", False): ("onnxruntime", "torch"), ("cpu", True): ("torch",),
}


def engine_names() -> tuple[str, ...]:
    return tuple(info.name for info in ENGINES)


def engine_choices() -> tuple[str, ...]:
    """What ``--engine`` accepts."""
    return ("auto", *engine_names())


def engine_info(name: str) -> EngineInfo:
    for info in ENGINES:
        if info.name == name:
            return info
    raise InvalidInputError(f"engine must be one of {', '.join(engine_choices())}, not {name!r}")


def engine_importable(name: str) -> bool:
    """Whether the library behind an engine is installed."""
    return importlib.util.find_spec(engine_info(name).library) is not None


def auto_engine(device: str, needs_frames: bool, compile: bool = False, importable=engine_importable,
                bf16: bool = False) -> str:
    """The engine ``auto`` means on a resolved ``device`` (``compile`` and ``bf16`` are torch features)."""
    if compile or bf16:
        return "torch"
    return next(name for name in AUTO_ORDER[(device, needs_frames)] if name == "torch" or importable(name))


def available_engines(device: str, importable=engine_importable) -> list[str]:
    """Engines whose library is installed and that run on the resolved ``device``."""
    return [info.name for info in ENGINES if device in info.devices and importable(info.name)]


def check_fp16(device: str, fp16: bool) -> None:
    """Refuse half precision off CUDA, before anything is loaded."""
    if fp16 and device != "cuda":
        raise InvalidInputError("fp16 needs a CUDA device")


def precision_name(fp16: bool, bf16: bool) -> str:
    """What an engine's ``precision`` (and the logs and bench rows) call the fp16 / bf16 flags."""
    return "fp16" if fp16 else "bf16" if bf16 else "fp32"


def check_bf16(engine: str, fp16: bool, bf16: bool) -> None:
    """bfloat16 autocast is the torch engine's (ONNX Runtime and TensorRT run the fp32/fp16 graph)."""
    if bf16 and fp16:
        raise InvalidInputError("choose one of --fp16 and --bf16")
    if bf16 and engine != "torch":
        raise InvalidInputError(f"--bf16 is a torch engine feature, not {engine}'s: use --engine torch")
