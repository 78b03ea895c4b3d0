"""Inference engines behind one interface: ``torch``, ``onnxruntime`` and ``tensorrt``.

``create_engine(checkpoint)`` picks the fastest one available; each engine's module (and its
library) is imported only when that engine is created.
"""

from star_har.realtime.engines.base import EngineUnavailable, InferenceEngine, ModelSpec, default_cache_dir
from star_har.realtime.engines.factory import available_engines, create_engine, resolve_device, select_engine

__all__ = ["EngineUnavailable", "InferenceEngine", "ModelSpec", "available_engines", "create_engine",
           "default_cache_dir", "resolve_device", "select_engine"]
