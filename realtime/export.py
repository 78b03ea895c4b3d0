"""ONNX export of star-har models (dynamo exporter), self-describing through ONNX metadata.

The exported graph has inputs ``keypoints`` (B, T, J, 3) (``(B, T, J, 4)`` with depth for models
with ``joint_depth``) and, for models that read RGB,
``frames`` (B, 3, T, H, W) (pose-only models have no frames input at all), and outputs
``logits`` (B, K), ``frame_importance`` (B, T) and ``novelty`` (B,). The batch dimension is dynamic; so is T
(any even number) when the model allows it. The metadata carries the class names, the joint
layout, the temporal sampling and the input layout, so an ``.onnx`` file can be used without
its checkpoint (:func:`read_onnx_spec`).

The TorchScript-based exporter cannot express the attention's dynamic shapes; the dynamo
exporter (``torch.export``) can. A model with gradient importance
(:class:`~star_har.model.importance.GradientImportance`) runs a backward pass inside its forward,
which ``torch.export`` cannot capture; it is first traced into a plain graph of forward and
backward operators (:func:`trace_with_backward`), which then exports like any model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn
from torch._decomp import core_aten_decompositions
from torch.export import Dim
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn.attention import SDPBackend, sdpa_kernel

from star_har.errors import InvalidInputError
from star_har.files import atomic_write
from star_har.model.checkpoint import Checkpoint
from star_har.model.importance import GradientImportance
from star_har.realtime.engines.base import OUTPUT_NAMES, ModelSpec, default_cache_dir

log = logging.getLogger(__name__)
# The ONNX optimiser logs every rewrite at INFO; keep star-har's INFO output readable.
for _name in ("onnx_ir", "onnxscript"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_METADATA_PREFIX = "star_har."
# Largest batch the exported graph promises to accept (the graph itself does not care).
MAX_EXPORT_BATCH = 1024
INPUT_LAYOUT = ("keypoints: (batch, time, joints, 3 or 4) float32, x and y in pixels of the frames, "
                "confidence in [0, 1] and, as a fourth channel for models with depth, depth in pixels "
                "(larger = farther); frames: (batch, 3, time, height, width) float32 RGB in [0, 1] "
                "normalised with the Kinetics mean/std (only models that read RGB)")


class PoseExportWrapper(nn.Module):
    """``forward(keypoints) -> (logits, frame_importance, novelty)``: the signature without frames."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, keypoints: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(None, keypoints))


class RGBPoseExportWrapper(PoseExportWrapper):
    """``forward(frames, keypoints) -> (logits, frame_importance, novelty)`` as plain tensors."""

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(frames, keypoints))


def model_fingerprint(checkpoint: Checkpoint, spec: ModelSpec, gradient: bool = False) -> str:
    """sha256 of everything that determines the exported graph: model, weights, input spec, the
    importance method and the torch version (the exporter's output changes with it)."""
    digest = hashlib.sha256()
    header = {"model": checkpoint.model_name, "classes": checkpoint.num_classes, "hparams": checkpoint.hparams,
              "spec": spec.to_json(), "torch": torch.__version__, "outputs": OUTPUT_NAMES}
    if gradient:  # absent otherwise, so that existing caches stay valid
        header["importance"] = "gradient"
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for key in sorted(checkpoint.state_dict):
        tensor = checkpoint.state_dict[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _dynamic_shapes(spec: ModelSpec, dynamic_time: bool) -> tuple[dict[int, Dim], ...]:
    batch = Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    time_dim = 2 * Dim("half_time", min=1, max=256) if dynamic_time else None  # STAR needs even T
    keypoints = {0: batch} | ({1: time_dim} if dynamic_time else {})
    if not spec.needs_frames:
        return (keypoints,)
    frames = {0: batch} | ({2: time_dim} if dynamic_time else {})
    return frames, keypoints


def _input_gradient_of_convolution(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                                   bias_sizes, stride, padding, dilation, transposed: bool, output_padding,
                                   groups: int, output_mask) -> tuple[torch.Tensor | None, None, None]:
    """``aten.convolution_backward`` for the input alone, as the transposed convolution it is
    (ONNX has no convolution-backward operator; the weights are frozen, so no other output)."""
    if transposed or output_mask[1] or output_mask[2]:
        raise NotImplementedError("only the input gradient of a plain convolution is exportable")
    kernel = weight.shape[2:]
    fit = [input.shape[2 + i] - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                 + dilation[i] * (kernel[i] - 1) + 1) for i in range(len(kernel))]
    grad_input = torch.ops.aten.convolution(grad_output, weight, None, stride, padding, dilation, True, fit, groups)
    return grad_input, None, None


def trace_with_backward(module: nn.Module, args: tuple[torch.Tensor, ...]) -> torch.fx.GraphModule:
    """``module`` (whose forward may call ``torch.autograd.grad``) as a graph of plain aten
    operators, forward and backward, with symbolic shapes. Attention runs its math form so that its
    backward decomposes into matrix products, and a convolution's input gradient becomes a
    transposed convolution: every operator of the result has an ONNX counterpart."""
    decompositions = dict(core_aten_decompositions())
    decompositions[torch.ops.aten.convolution_backward.default] = _input_gradient_of_convolution
    with sdpa_kernel(SDPBackend.MATH):
        # the parameters stay real tensors: they become the graph's constants
        graph = make_fx(module, tracing_mode="symbolic", decomposition_table=decompositions,
                        _allow_non_fake_inputs=True)(*args)
    # A view recorded for the strides of this trace need not hold when torch.export traces the
    # graph again; a reshape always does (and exports to the same ONNX Reshape).
    for node in graph.graph.nodes:
        if node.target in (torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default):
            node.target = torch.ops.aten.reshape.default
    graph.recompile()
    return graph


def _export_program(net: nn.Module, spec: ModelSpec, dynamic_time: bool) -> torch.onnx.ONNXProgram:
    frames, keypoints = spec.example_inputs(batch=2)
    wrapper = (RGBPoseExportWrapper if spec.needs_frames else PoseExportWrapper)(net).eval()
    args = (torch.from_numpy(keypoints),)
    input_names = ["keypoints"]
    if spec.needs_frames:
        args, input_names = (torch.from_numpy(frames), *args), ["frames", *input_names]
    if isinstance(net, GradientImportance):
        wrapper = trace_with_backward(wrapper, args)
    with warnings.catch_warnings():
        # torch.export notes about specialised symbols are informative only.
        warnings.simplefilter("ignore", UserWarning)
        return torch.onnx.export(wrapper, args, dynamo=True, input_names=input_names,
                                 output_names=list(OUTPUT_NAMES), verbose=False,
                                 dynamic_shapes=_dynamic_shapes(spec, dynamic_time))


def export_onnx(net: nn.Module, spec: ModelSpec, path: str | os.PathLike,
                metadata: dict[str, str] | None = None) -> Path:
    """Export ``net`` (eval mode, CPU) to ``path`` atomically; check the graph; embed ``spec``.

    Time is exported as a dynamic (even) dimension and falls back to the checkpoint's
    ``frames_per_window`` for models whose graph cannot vary it.
    """
    net = net.eval().cpu()
    start = time.perf_counter()
    try:
        program = _export_program(net, spec, dynamic_time=True)
    except Exception as exc:  # torch.export raises many types for shape constraints it cannot prove
        log.info("dynamic-time export failed (%s); exporting with T=%d fixed",
                 str(exc).splitlines()[0][:120], spec.frames_per_window)
        program = _export_program(net, spec, dynamic_time=False)
    proto = program.model_proto
    props = {"spec": spec.to_json(), "input_layout": INPUT_LAYOUT, **(metadata or {})}
    onnx.helper.set_model_props(proto, {_METADATA_PREFIX + key: value for key, value in props.items()})
    proto.producer_name = "star-har"
    onnx.checker.check_model(proto, full_check=True)
    path = atomic_write(path, proto.SerializeToString())
    log.info("exported %s to %s in %.1f s", spec.model_name, path, time.perf_counter() - start)
    return path


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The star-har metadata of an exported file (keys without the ``star_har.`` prefix)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {entry.key[len(_METADATA_PREFIX):]: entry.value for entry in proto.metadata_props
            if entry.key.startswith(_METADATA_PREFIX)}


def read_onnx_spec(path: str | os.PathLike) -> ModelSpec:
    """The :class:`ModelSpec` stored in an ONNX file exported by :func:`export_onnx`."""
    metadata = read_onnx_metadata(path)
    if "spec" not in metadata:
        raise InvalidInputError(f"{path} was not exported by star-har (no star_har.spec metadata)")
    return ModelSpec.from_json(metadata["spec"])


def export_checkpoint_onnx(checkpoint: Checkpoint, spec: ModelSpec, path: str | os.PathLike,
                           fingerprint: str | None = None, gradient: bool = False) -> Path:
    """Export a checkpoint's model with metadata saying where the graph came from; ``gradient``:
    its ``frame_importance`` output is :class:`~star_har.model.importance.GradientImportance`'s."""
    fingerprint = fingerprint or model_fingerprint(checkpoint, spec, gradient)
    metadata = {"model": checkpoint.model_name, "hparams": json.dumps(checkpoint.hparams, default=str),
                "model_sha256": fingerprint, "checkpoint_meta": json.dumps(checkpoint.meta, default=str),
                "importance": "gradient" if gradient else "model"}
    net = checkpoint.build()
    return export_onnx(GradientImportance(net) if gradient else net, spec, path, metadata)


def cached_onnx(checkpoint: Checkpoint, spec: ModelSpec, cache_dir: str | os.PathLike | None = None,
                gradient: bool = False) -> Path:
    """The checkpoint exported to ONNX, from ``cache_dir`` when an identical export exists there.

    The file name is the model fingerprint, so new weights, another input size, another importance
    method or another torch version export again instead of reusing a stale graph.
    """
    fingerprint = model_fingerprint(checkpoint, spec, gradient)
    path = Path(cache_dir or default_cache_dir()) / f"{checkpoint.model_name}-{fingerprint[:20]}.onnx"
    if path.is_file():
        log.debug("using cached ONNX export %s", path)
        return path
    log.info("exporting %s to ONNX (cached in %s)", checkpoint.model_name, path.parent)
    return export_checkpoint_onnx(checkpoint, spec, path, fingerprint, gradient)


def export_tensorrt(checkpoint: Checkpoint, spec: ModelSpec, path: str | os.PathLike, fp16: bool = False,
                    max_batch: int = 8, gradient: bool = False) -> Path:
    """Build a serialized TensorRT engine at ``path`` (its ONNX graph is kept next to it as
    ``.onnx`` and the build record as ``.json``: which GPU and TensorRT version it is valid for)."""
    from star_har.realtime.engines.tensorrt_engine import build_engine, gpu_identity, import_tensorrt

    trt = import_tensorrt()
    gpu = gpu_identity()
    path = Path(path)
    onnx_path = export_checkpoint_onnx(checkpoint, spec, path.with_suffix(".onnx"), gradient=gradient)
    record, write = build_engine(trt, onnx_path, spec, fp16, max_batch, gpu)
    write(path, path.with_suffix(".json"))
    log.info("wrote TensorRT engine %s (%s, %s)", path, record["precision"], gpu["gpu_name"])
    return path
