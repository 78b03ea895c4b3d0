"""TensorRT execution through the official Python API, with a cache of built engines.

An engine is built from the exported ONNX graph (``trt.OnnxParser``), optionally with
``BuilderFlag.FP16``, and one optimisation profile covering batch 1 to ``max_batch`` at the
checkpoint's window length. Building takes minutes, so the serialized engine is cached next to
a JSON record of what it was built from and for: the ONNX file's sha256, the GPU name and
compute capability, the TensorRT version, the precision and the profile. When any of these
differ from the current situation (new weights, another GPU, a TensorRT upgrade) the engine is
rebuilt, since a serialized engine is only valid for the exact GPU model and TensorRT version
that built it.

Inference uses ``execute_async_v3`` with torch CUDA tensors as input and output buffers, on a
dedicated CUDA stream. ``tensorrt`` is imported only when this engine is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from star_har.errors import InvalidInputError
from star_har.files import atomic_write
from star_har.realtime.engines.base import OUTPUT_NAMES, EngineUnavailable, InferenceEngine, ModelSpec

log = logging.getLogger(__name__)

Shape = tuple[int, ...]


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or :class:`EngineUnavailable` saying how to get it."""
    try:
        import tensorrt
    except ImportError:
        raise EngineUnavailable("TensorRT is not installed: it needs an NVIDIA GPU and "
                                "`pip install 'star-har[tensorrt]'` (tensorrt>=10)") from None
    return tensorrt


def gpu_identity(device_index: int = 0) -> dict[str, str]:
    """Name and compute capability of a CUDA device (a TensorRT engine only runs on the same kind)."""
    import torch

    if not torch.cuda.is_available():
        raise EngineUnavailable("TensorRT needs a CUDA GPU and torch sees none")
    major, minor = torch.cuda.get_device_capability(device_index)
    return {"gpu_name": torch.cuda.get_device_name(device_index), "compute_capability": f"{major}.{minor}"}


def profile_shapes(spec: ModelSpec, max_batch: int, opt_batch: int = 1) -> dict[str, tuple[Shape, Shape, Shape]]:
    """(min, opt, max) shape of each input for one optimisation profile.

    Batch varies from 1 to ``max_batch`` (optimised for ``opt_batch``: 1, the real-time case);
    the window length is fixed to the checkpoint's, which is what the ring buffer produces.
    """
    if not 1 <= opt_batch <= max_batch:
        raise InvalidInputError(f"need 1 <= opt_batch ({opt_batch}) <= max_batch ({max_batch})")
    per_sample: dict[str, Shape] = {"keypoints": (spec.frames_per_window, spec.input_joints, spec.keypoint_channels)}
    if spec.needs_frames:
        per_sample = {"frames": (3, spec.frames_per_window, *spec.input_size)} | per_sample
    return {name: ((1, *shape), (opt_batch, *shape), (max_batch, *shape)) for name, shape in per_sample.items()}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_record(onnx_sha256: str, gpu: dict[str, str], tensorrt_version: str, fp16: bool,
                  profile: dict[str, tuple[Shape, Shape, Shape]]) -> dict[str, Any]:
    """What a cached engine was built from and for; any difference means rebuild."""
    return {"onnx_sha256": onnx_sha256, **gpu, "tensorrt_version": tensorrt_version,
            "precision": "fp16" if fp16 else "fp32",
            "profile": {name: [list(shape) for shape in shapes] for name, shapes in profile.items()}}


def engine_cache_paths(cache_dir: str | os.PathLike, record: dict[str, Any]) -> tuple[Path, Path]:
    """(engine file, JSON record file) for a model in ``cache_dir``: one slot per model and
    precision, overwritten when the GPU or TensorRT version changes."""
    stem = f"{record['onnx_sha256'][:20]}-{record['precision']}"
    return Path(cache_dir) / f"{stem}.engine", Path(cache_dir) / f"{stem}.json"


def build_serialized_engine(trt: ModuleType, onnx_path: str | os.PathLike, fp16: bool,
                            profile: dict[str, tuple[Shape, Shape, Shape]]) -> bytes:
    """Parse the ONNX graph and build a serialized engine (minutes for large models)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated in newer TensorRT
            log.warning("this GPU has no fast fp16; TensorRT will keep most layers in fp32")
        config.set_flag(trt.BuilderFlag.FP16)
    optimization_profile = builder.create_optimization_profile()
    for name, (smallest, optimal, largest) in profile.items():
        optimization_profile.set_shape(name, smallest, optimal, largest)
    config.add_optimization_profile(optimization_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    return bytes(serialized)


def _mismatch(cached: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    return sorted(key for key in expected.keys() | cached.keys() if cached.get(key) != expected.get(key))


def build_engine(trt: ModuleType, onnx_path: str | os.PathLike, spec: ModelSpec, fp16: bool, max_batch: int,
                 gpu: dict[str, str]) -> tuple[dict[str, Any], Callable[[Path, Path], bytes]]:
    """The one TensorRT build path (``star-har export`` and the engine cache both use it):
    (the build record, a function that builds the engine and writes it and its record)."""
    profile = profile_shapes(spec, max_batch)
    record = engine_record(file_sha256(onnx_path), gpu, trt.__version__, fp16, profile)

    def write(engine_path: Path, record_path: Path) -> bytes:
        log.info("building a %s TensorRT engine for %s on %s (minutes)", record["precision"], spec.model_name,
                 gpu["gpu_name"])
        blob = build_serialized_engine(trt, onnx_path, fp16, profile)
        atomic_write(engine_path, blob)
        atomic_write(record_path, json.dumps(record, indent=1).encode())
        return blob

    return record, write


def load_or_build_engine(trt: ModuleType, onnx_path: str | os.PathLike, spec: ModelSpec,
                         cache_dir: str | os.PathLike, fp16: bool, max_batch: int,
                         gpu: dict[str, str]) -> bytes:
    """The serialized engine for ``onnx_path`` from the cache, built (and cached) when the cached
    one is missing or was built from another graph, GPU, TensorRT version or profile."""
    record, write = build_engine(trt, onnx_path, spec, fp16, max_batch, gpu)
    engine_path, record_path = engine_cache_paths(cache_dir, record)
    if engine_path.is_file() and record_path.is_file():
        cached = json.loads(record_path.read_text())
        stale = _mismatch(cached, record)
        if not stale:
            log.info("using cached TensorRT engine %s", engine_path)
            return engine_path.read_bytes()
        log.info("cached TensorRT engine %s is stale (%s differ): rebuilding", engine_path, ", ".join(stale))
    return write(engine_path, record_path)


class TensorRTEngine(InferenceEngine):
    """A deserialized TensorRT engine run with ``execute_async_v3`` on torch CUDA buffers.

    Batches up to ``max_batch`` windows; the window length is the checkpoint's.
    """

    name = "tensorrt"
    device = "cuda"

    def __init__(self, onnx_path: str | os.PathLike, spec: ModelSpec, cache_dir: str | os.PathLike,
                 fp16: bool = False, max_batch: int = 8) -> None:
        super().__init__(spec)
        trt = import_tensorrt()
        import torch

        from star_har.realtime.export import read_onnx_metadata

        gpu = gpu_identity()
        self.precision, self.max_batch = "fp16" if fp16 else "fp32", max_batch
        self.importance = read_onnx_metadata(onnx_path).get("importance", "model")
        blob = load_or_build_engine(trt, onnx_path, spec, cache_dir, fp16, max_batch, gpu)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise RuntimeError("TensorRT could not deserialize the cached engine; delete "
                               f"{cache_dir} to rebuild it")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self._outputs = {name: torch.from_numpy(np.empty(0, trt.nptype(self._engine.get_tensor_dtype(name)))).dtype
                         for name in names if self._engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT}
        self._stream = torch.cuda.Stream()

    def _infer(self, frames: np.ndarray | None, keypoints: np.ndarray) -> tuple[np.ndarray, ...]:
        import torch

        if keypoints.shape[0] > self.max_batch or keypoints.shape[1] != self.spec.frames_per_window:
            raise InvalidInputError(f"this TensorRT engine takes up to {self.max_batch} windows of "
                             f"{self.spec.frames_per_window} frames, got {keypoints.shape[:2]}")
        inputs = {"keypoints": keypoints} | ({"frames": frames} if frames is not None else {})
        with torch.cuda.stream(self._stream):
            buffers = {name: torch.from_numpy(array).to("cuda", non_blocking=True) for name, array in inputs.items()}
            for name, tensor in buffers.items():
                self._context.set_input_shape(name, tuple(tensor.shape))
                self._context.set_tensor_address(name, tensor.data_ptr())
            outputs = {}
            for name, dtype in self._outputs.items():
                outputs[name] = torch.empty(tuple(self._context.get_tensor_shape(name)), dtype=dtype, device="cuda")
                self._context.set_tensor_address(name, outputs[name].data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            results = tuple(outputs[name].float().cpu().numpy() for name in OUTPUT_NAMES if name in outputs)
        self._stream.synchronize()
        return results
