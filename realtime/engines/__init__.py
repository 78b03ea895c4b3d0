"""Inference engines behind one interface: ``torch``, ``onnxruntime`` and ``tensorrt``.

``create_engine(checkpoint)`` picks the fastest one available (the table in
:mod:`realtime.engines.table`); each engine's module (and its library) is imported only when that
engine is created, and this package itself loads torch only when one of its names is used, so the
command-line parsers can read the engine table cheaply.
"""

import importlib

_EXPORTS = {"EngineUnavailable": "base", "InferenceEngine": "base", "ModelSpec": "base",
            "default_cache_dir": "base", "available_engines": "table", "create_engine": "factory",
            "resolve_device": "factory", "select_engine": "factory"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
