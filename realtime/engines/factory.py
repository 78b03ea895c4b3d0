"""``create_engine``: the fastest available engine for a checkpoint, or the one asked for.

Which engine ``auto`` picks, where each runs and which support fp16 is the table in
:mod:`realtime.engines.table`. ``compile=True`` always means the ``torch`` engine.
"""

from __future__ import annotations

import logging
import os

from star_har.errors import InvalidInputError
from star_har.model.checkpoint import Checkpoint
from star_har.model.importance import GradientImportance
from star_har.realtime.engines.base import EngineUnavailable, InferenceEngine, ModelSpec, default_cache_dir
from star_har.realtime.engines.table import (
    DEVICES,
    auto_engine,
    check_bf16,
    check_fp16,
    engine_importable,
    engine_info,
    precision_name,
)

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise InvalidInputError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise EngineUnavailable("--device cuda was requested but no CUDA GPU is visible to torch")
    return device


def select_engine(device: str, compile: bool = False, needs_frames: bool = False,
                  importable=engine_importable, bf16: bool = False) -> str:
    """The engine ``create_engine(engine="auto")`` uses on a resolved ``device`` (see the table)."""
    return auto_engine(device, needs_frames, compile, importable, bf16)


def create_engine(checkpoint: Checkpoint, engine: str = "auto", device: str = "auto", fp16: bool = False,
                  compile: bool = False, cache_dir: str | os.PathLike | None = None,
                  input_size: tuple[int, int] | None = None, max_batch: int = 8,
                  threads: int | None = None, bf16: bool = False,
                  gradient_importance: bool = False) -> InferenceEngine:
    """An inference engine for ``checkpoint``.

    engine: ``"auto"`` (see module doc), ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
    device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
    fp16: half precision (CUDA only). compile: ``torch.compile`` (torch engine only).
    bf16: bfloat16 autocast (torch engine only; on CPU it needs AVX-512 BF16 or AMX to be faster).
    cache_dir: where ONNX exports and TensorRT engines are cached (default
        ``~/.cache/star-har/engines``, ``$STAR_HAR_CACHE`` overrides).
    input_size: (H, W) frames for RGB models (default: the checkpoint's, else 112 x 112).
    max_batch: largest batch a TensorRT engine accepts.
    threads: CPU threads for onnxruntime (default: one per core).
    gradient_importance: report :class:`~star_har.model.importance.GradientImportance`'s
        first-order occlusion estimate as the frame importance, on any engine (its ONNX export and
        TensorRT engine carry the backward pass); about 2.5 forwards per window on a CPU.
    Raises EngineUnavailable when the engine cannot run here, ValueError for bad combinations.
    """
    spec = ModelSpec.from_checkpoint(checkpoint, input_size)
    device = resolve_device(device)
    if engine == "auto":
        engine = select_engine(device, compile, spec.needs_frames, bf16=bf16)
    if compile and engine != "torch":
        raise InvalidInputError(f"--compile applies to the torch engine, not {engine}")
    check_bf16(engine, fp16, bf16)
    check_fp16(device, fp16)
    log.info("inference engine: %s on %s (%s)", engine, device, precision_name(fp16, bf16))
    if engine == "torch":
        from star_har.realtime.engines.torch_engine import TorchEngine

        net = checkpoint.build()
        return TorchEngine(GradientImportance(net) if gradient_importance else net, spec, device=device,
                           fp16=fp16, compile=compile, bf16=bf16)
    if engine == "tensorrt":
        from star_har.realtime.engines.tensorrt_engine import import_tensorrt

        import_tensorrt()  # fail before spending time on an export
    if device not in engine_info(engine).devices:
        raise EngineUnavailable(f"the {engine} engine needs a {' or '.join(engine_info(engine).devices)} device")
    from star_har.realtime.export import cached_onnx

    cache = cache_dir or default_cache_dir()
    onnx_path = cached_onnx(checkpoint, spec, cache, gradient=gradient_importance)
    if engine == "onnxruntime":
        from star_har.realtime.engines.onnx_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(onnx_path, spec, device=device, fp16=fp16, threads=threads, cache_dir=cache)
    from star_har.realtime.engines.tensorrt_engine import TensorRTEngine

    return TensorRTEngine(onnx_path, spec, cache_dir=cache, fp16=fp16, max_batch=max_batch)
