"""``create_engine``: the fastest available engine for a checkpoint, or the one asked for.

Automatic choice (measured with ``star-har bench``, see README):

* CUDA: ``tensorrt`` when the ``tensorrt`` package imports, else ``torch`` (``torch.compile``
  and fp16 are the user's to ask for, since compiling takes a while).
* CPU, pose-only models: ``onnxruntime`` when installed, else ``torch``. On the quiet 2-core
  development machine ONNX Runtime ran the shipped pose transformer in 12 ms against 20 ms. The
  first use exports the checkpoint to ONNX (about 30 s on 2 cores), cached by model fingerprint.
* CPU, RGB models: ``torch``. Their time goes into the 3-D CNN backbone, where PyTorch's
  convolutions were 15-25 % faster than ONNX Runtime's on the same quiet machine.

``compile=True`` always means the ``torch`` engine.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from star_har.errors import InvalidInputError
from star_har.model.checkpoint import Checkpoint
from star_har.realtime.engines.base import EngineUnavailable, InferenceEngine, ModelSpec, default_cache_dir

log = logging.getLogger(__name__)

ENGINES = ("torch", "onnxruntime", "tensorrt")
DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def engine_importable(name: str) -> bool:
    """Whether the library behind an engine is installed (``torch`` always is)."""
    module = {"torch": "torch", "onnxruntime": "onnxruntime", "tensorrt": "tensorrt"}[name]
    return importlib.util.find_spec(module) is not None


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise InvalidInputError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise EngineUnavailable("--device cuda was requested but no CUDA GPU is visible to torch")
    return device


def select_engine(device: str, compile: bool = False, needs_frames: bool = False,
                  importable=engine_importable) -> str:
    """The engine ``create_engine(engine="auto")`` uses on a resolved ``device`` (see module doc)."""
    if compile:
        return "torch"
    if device == "cuda":
        return "tensorrt" if importable("tensorrt") else "torch"
    if needs_frames:
        return "torch"
    return "onnxruntime" if importable("onnxruntime") else "torch"


def available_engines(device: str) -> list[str]:
    """Engines whose library is installed and that can run on the resolved ``device``."""
    names = [name for name in ENGINES if engine_importable(name)]
    return [name for name in names if device == "cuda" or name != "tensorrt"]


def create_engine(checkpoint: Checkpoint, engine: str = "auto", device: str = "auto", fp16: bool = False,
                  compile: bool = False, cache_dir: str | os.PathLike | None = None,
                  input_size: tuple[int, int] | None = None, max_batch: int = 8,
                  threads: int | None = None) -> InferenceEngine:
    """An inference engine for ``checkpoint``.

    engine: ``"auto"`` (see module doc), ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
    device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    fp16: half precision (CUDA only). compile: ``torch.compile`` (torch engine only).
    cache_dir: where ONNX exports and TensorRT engines are cached (default
        ``~/.cache/star-har/engines``, ``$STAR_HAR_CACHE`` overrides).
    input_size: (H, W) frames for RGB models (default: the checkpoint's, else 112 x 112).
    max_batch: largest batch a TensorRT engine accepts.
    threads: CPU threads for onnxruntime (default: one per core).
    Raises EngineUnavailable when the engine cannot run here, ValueError for bad combinations.
    """
    spec = ModelSpec.from_checkpoint(checkpoint, input_size)
    device = resolve_device(device)
    if engine == "auto":
        engine = select_engine(device, compile, spec.needs_frames)
    if engine not in ENGINES:
        raise InvalidInputError(f"engine must be auto or one of {', '.join(ENGINES)}, not {engine!r}")
    if compile and engine != "torch":
        raise InvalidInputError(f"--compile applies to the torch engine, not {engine}")
    if fp16 and device != "cuda":
        raise InvalidInputError("fp16 needs a CUDA device")
    log.info("inference engine: %s on %s (%s)", engine, device, "fp16" if fp16 else "fp32")
    if engine == "torch":
        from star_har.realtime.engines.torch_engine import TorchEngine

        return TorchEngine(checkpoint.build(), spec, device=device, fp16=fp16, compile=compile)
    if engine == "tensorrt":
        from star_har.realtime.engines.tensorrt_engine import import_tensorrt

        import_tensorrt()  # fail before spending time on an export
        if device != "cuda":
            raise EngineUnavailable("the tensorrt engine needs a CUDA GPU")
    from star_har.realtime.export import cached_onnx

    cache = cache_dir or default_cache_dir()
    onnx_path = cached_onnx(checkpoint, spec, cache)
    if engine == "onnxruntime":
        from star_har.realtime.engines.onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_path, spec, device=device, fp16=fp16, threads=threads, cache_dir=cache)
    from star_har.realtime.engines.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(onnx_path, spec, cache_dir=cache, fp16=fp16, max_batch=max_batch)
