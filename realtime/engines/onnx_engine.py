"""ONNX Runtime execution of an exported graph (CPU; CUDA / TensorRT execution providers when present)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from star_har.errors import InvalidInputError
from star_har.realtime.engines.base import OUTPUT_NAMES, EngineUnavailable, InferenceEngine, ModelSpec

log = logging.getLogger(__name__)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise EngineUnavailable("onnxruntime is not installed: pip install onnxruntime "
                                "(or onnxruntime-gpu for CUDA)") from None
    return onnxruntime


def execution_providers(device: str, fp16: bool, available: list[str],
                        cache_dir: str | os.PathLike | None = None) -> list[str | tuple[str, dict]]:
    """ONNX Runtime providers to request, best first, among the ``available`` ones.

    On CUDA the TensorRT provider comes first (it is the only one that runs an fp32 graph in
    fp16), then the CUDA provider; the CPU provider always closes the list as ONNX Runtime's
    fallback for unsupported nodes.
    """
    chosen: list[str | tuple[str, dict]] = []
    if device == "cuda":
        if "TensorrtExecutionProvider" in available:
            options = {"trt_fp16_enable": fp16}
            if cache_dir is not None:
                options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)}
            chosen.append(("TensorrtExecutionProvider", options))
        elif fp16:
            raise InvalidInputError("fp16 with onnxruntime needs its TensorRT execution provider; "
                             "use --engine tensorrt or --engine torch for fp16")
        if "CUDAExecutionProvider" in available:
            chosen.append("CUDAExecutionProvider")
        if not chosen:
            raise EngineUnavailable("this onnxruntime has no CUDA provider: pip install onnxruntime-gpu")
    elif fp16:
        raise InvalidInputError("fp16 needs a CUDA device")
    return chosen + ["CPUExecutionProvider"]


class OnnxRuntimeEngine(InferenceEngine):
    """Run an ONNX file written by :func:`realtime.export.export_onnx` in an ``InferenceSession``.

    ``threads`` sets the intra-op thread count (default: ONNX Runtime's choice, one per core).
    """

    name = "onnxruntime"

    def __init__(self, onnx_path: str | os.PathLike, spec: ModelSpec, device: str = "cpu",
                 fp16: bool = False, threads: int | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        super().__init__(spec)
        ort = _onnxruntime()
        providers = execution_providers(device, fp16, ort.get_available_providers(), cache_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Idle ORT threads spin-wait by default, taking CPU from capture and MediaPipe between windows.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(Path(onnx_path)), options, providers=providers)
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        self.precision = "fp16" if fp16 and self.providers[0] == "TensorrtExecutionProvider" else "fp32"
        self.input_names = [node.name for node in self.session.get_inputs()]
        exported = {node.name for node in self.session.get_outputs()}
        self.output_names = [name for name in OUTPUT_NAMES if name in exported]
        self.importance = self.session.get_modelmeta().custom_metadata_map.get("star_har.importance", "model")
        log.debug("onnxruntime session on %s with inputs %s", self.providers, self.input_names)

    def _infer(self, frames: np.ndarray | None, keypoints: np.ndarray) -> tuple[np.ndarray, ...]:
        feeds = {"keypoints": keypoints}
        if frames is not None:
            feeds["frames"] = frames
        return tuple(self.session.run(self.output_names, feeds))
