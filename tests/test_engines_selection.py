"""Engine choice, input validation, the torch engine and the bench command, without exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from star_har.model import load_checkpoint
from star_har.realtime.bench import run_bench, write_report
from star_har.realtime.engines import EngineUnavailable, ModelSpec, create_engine, select_engine
from star_har.realtime.engines.factory import resolve_device
from star_har.realtime.engines.onnx_engine import execution_providers
from tests.realtime_helpers import CLASS_NAMES, tiny_checkpoint


@pytest.fixture(scope="module")
def pose_checkpoint(tmp_path_factory):
    return load_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("ck") / "pose.pt", "pose"))


@pytest.fixture(scope="module")
def rgb_checkpoint(tmp_path_factory):
    return load_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("ck") / "rgb.pt", "rgb+pose"))


def importable(*names):
    return lambda name: name in names


@pytest.mark.parametrize("device, compile, needs_frames, libraries, expected", [
    ("cuda", False, True, ("torch", "onnxruntime", "tensorrt"), "tensorrt"),
    ("cuda", False, False, ("torch", "onnxruntime"), "torch"),
    ("cuda", True, True, ("torch", "onnxruntime", "tensorrt"), "torch"),  # compile means torch
    ("cpu", False, False, ("torch", "onnxruntime", "tensorrt"), "onnxruntime"),  # faster for pose
    ("cpu", False, True, ("torch", "onnxruntime"), "torch"),  # faster for the 3-D CNN
    ("cpu", False, False, ("torch",), "torch"),
    ("cpu", True, False, ("torch", "onnxruntime"), "torch"),
])
def test_auto_selection(device, compile, needs_frames, libraries, expected):
    assert select_engine(device, compile, needs_frames, importable(*libraries)) == expected


def test_bf16_means_the_torch_engine():
    assert select_engine("cpu", needs_frames=False, importable=importable("torch", "onnxruntime"), bf16=True) == "torch"
    assert select_engine("cuda", needs_frames=True, importable=importable("torch", "tensorrt"), bf16=True) == "torch"


def test_device_resolution_without_gpu(pose_checkpoint, monkeypatch):
    monkeypatch.setattr("star_har.realtime.engines.factory.cuda_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(EngineUnavailable, match="no CUDA GPU"):
        create_engine(pose_checkpoint, device="cuda")


def test_bad_combinations_are_clear_errors(pose_checkpoint, monkeypatch):
    monkeypatch.setattr("star_har.realtime.engines.factory.cuda_available", lambda: False)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        create_engine(pose_checkpoint, "torch", "cpu", fp16=True)
    with pytest.raises(ValueError, match="--compile applies to the torch engine"):
        create_engine(pose_checkpoint, "onnxruntime", "cpu", compile=True)
    with pytest.raises(ValueError, match="engine must be"):
        create_engine(pose_checkpoint, "openvino", "cpu")
    with pytest.raises(ValueError, match="device must be"):
        create_engine(pose_checkpoint, "torch", "tpu")
    with pytest.raises(ValueError, match="--bf16 is a torch engine feature"):
        create_engine(pose_checkpoint, "onnxruntime", "cpu", bf16=True)
    with pytest.raises(ValueError, match="one of --fp16 and --bf16"):
        create_engine(pose_checkpoint, "torch", "cuda" if torch.cuda.is_available() else "cpu", fp16=True, bf16=True)


def test_tensorrt_missing_is_a_clear_error(pose_checkpoint, monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(EngineUnavailable, match="TensorRT is not installed"):
        create_engine(pose_checkpoint, "tensorrt", "cpu", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())  # failed before spending time on an export


def test_onnxruntime_providers():
    cpu_only = ["CPUExecutionProvider"]
    assert execution_providers("cpu", False, cpu_only) == ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    first, *rest = execution_providers("cuda", True, gpu, cache_dir="/cache")
    assert first == ("TensorrtExecutionProvider", {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                                   "trt_engine_cache_path": "/cache"})
    assert rest == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("cuda", False, gpu[1:]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ValueError, match="TensorRT execution provider"):
        execution_providers("cuda", True, gpu[1:])
    with pytest.raises(EngineUnavailable, match="onnxruntime-gpu"):
        execution_providers("cuda", False, cpu_only)


def test_torch_engine_matches_the_model(rgb_checkpoint):
    engine = create_engine(rgb_checkpoint, "torch", "cpu")
    frames, keypoints = engine.spec.example_inputs(batch=1)
    logits, importance, novelty = engine.infer(frames, keypoints)
    with torch.no_grad():
        out = rgb_checkpoint.build()(torch.from_numpy(frames), torch.from_numpy(keypoints))
    np.testing.assert_allclose(logits, out.logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(importance, out.frame_importance.numpy(), atol=1e-6)
    assert logits.dtype == importance.dtype == novelty.dtype == np.float32 and novelty.shape == (1,)
    assert engine.class_names == tuple(CLASS_NAMES)


def test_bf16_autocast_stays_close_to_fp32(rgb_checkpoint):
    """bf16 runs the convolutions and matmuls in bfloat16 (the probabilities barely move) and
    still returns fp32 arrays."""
    fp32 = create_engine(rgb_checkpoint, "torch", "cpu")
    bf16 = create_engine(rgb_checkpoint, "torch", "cpu", bf16=True)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    frames, keypoints = fp32.spec.example_inputs(batch=2)
    exact, approximate = fp32.infer(frames, keypoints), bf16.infer(frames, keypoints)
    assert approximate.logits.dtype == np.float32 and not np.array_equal(exact.logits, approximate.logits)
    probabilities = [torch.from_numpy(s.logits).softmax(-1).numpy() for s in (exact, approximate)]
    np.testing.assert_allclose(*probabilities, atol=0.02)


def test_inputs_are_validated(pose_checkpoint, rgb_checkpoint):
    pose = create_engine(pose_checkpoint, "torch", "cpu")
    rgb = create_engine(rgb_checkpoint, "torch", "cpu")
    frames, keypoints = rgb.spec.example_inputs(batch=1)
    assert not pose.needs_frames and pose.input_size is None
    logits = pose.infer(None, keypoints).logits
    assert logits.shape == (1, len(CLASS_NAMES))
    with pytest.raises(ValueError, match=r"keypoints must be \(B, T, 13, 3\)"):
        pose.infer(None, keypoints[..., :10, :])
    with pytest.raises(ValueError, match="even number of frames"):
        pose.infer(None, keypoints[:, :15])
    with pytest.raises(ValueError, match="frames .* are required"):
        rgb.infer(None, keypoints)
    with pytest.raises(ValueError, match="frames must be"):
        rgb.infer(frames[..., :96, :96], keypoints)


def test_model_spec_reads_input_size_and_people(rgb_checkpoint):
    assert ModelSpec.from_checkpoint(rgb_checkpoint).input_size == (112, 112)
    rgb_checkpoint.meta["input_size"] = 224
    try:
        assert ModelSpec.from_checkpoint(rgb_checkpoint).input_size == (224, 224)
        assert ModelSpec.from_checkpoint(rgb_checkpoint, (160, 128)).input_size == (160, 128)
        with pytest.raises(ValueError, match="multiple of 16"):
            ModelSpec.from_checkpoint(rgb_checkpoint, (100, 100))
    finally:
        del rgb_checkpoint.meta["input_size"]
    spec = ModelSpec.from_checkpoint(rgb_checkpoint)
    two_people = ModelSpec(**{**spec.__dict__, "num_persons": 2})
    assert two_people.example_inputs(1)[1].shape == (1, 16, 26, 3)
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_bench_writes_tables(tmp_path, monkeypatch):
    monkeypatch.setattr("star_har.realtime.engines.factory.cuda_available", lambda: False)
    report = run_bench(models=["star-pose"], engines=["torch"], repeats=2, warmup=1)
    (row,) = report.latency
    assert (row.model, row.engine, row.device) == ("star-pose", "torch", "cpu")
    assert row.median_ms > 0 and row.gflops > 0 and row.params_m > 0 and not row.note
    paths = write_report(report, tmp_path, "bench-cpu")
    assert {path.name for path in paths} == {"bench-cpu.json", "bench-cpu.md", "bench-cpu-latency.csv"}
    assert json.loads((tmp_path / "bench-cpu.json").read_text())["latency"][0]["engine"] == "torch"
    assert f"| star-pose | {row.weights} | torch |" in (tmp_path / "bench-cpu.md").read_text()
    with pytest.raises(ValueError, match="unknown bench model"):
        run_bench(models=["resnet"], engines=["torch"])
    with pytest.raises(ValueError, match="unknown bench model.* nope"):  # before any latency run
        run_bench(models=["star-pose"], engines=["torch"], video=tmp_path / "clip.mp4", pipeline_model="nope")


def test_bench_rows_in_bf16(monkeypatch):
    monkeypatch.setattr("star_har.realtime.engines.factory.cuda_available", lambda: False)
    report = run_bench(models=["star-rgb64"], engines=["torch", "onnxruntime"], repeats=1, warmup=1, bf16=True)
    torch_row, onnx_row = report.latency
    assert (torch_row.precision, torch_row.median_ms > 0, torch_row.note) == ("bf16", True, "")
    assert "--bf16 is a torch engine feature" in onnx_row.note


def test_bench_star_pose_is_the_shipped_model():
    """The bench's "star-pose" row was once a dim-64 model called the shipped size (dim 128)."""
    from star_har.realtime import model_checkpoint
    from star_har.realtime.bench import MODELS

    shipped = load_checkpoint(model_checkpoint("penn-sports"))
    star_pose = next(model for model in MODELS if model.key == "star-pose")
    checkpoint, weights = star_pose.checkpoint(shipped.sampling.frames_per_window)
    assert weights == model_checkpoint("penn-sports").name and checkpoint.hparams == shipped.hparams
    other, weights = star_pose.checkpoint(shipped.sampling.frames_per_window + 2)  # another window: random
    assert weights == "random" and other.hparams["dim"] == shipped.hparams["dim"]


def test_one_engine_table_drives_the_command_line():
    from star_har.cli import build_parser
    from star_har.realtime.engines.table import ENGINES, available_engines, check_fp16, engine_choices

    commands = build_parser()._subparsers._group_actions[0].choices
    for command in ("run", "demo", "gui"):
        engine = next(a for a in commands[command]._actions if a.dest == "engine")
        assert tuple(engine.choices) == engine_choices() == ("auto", *(info.name for info in ENGINES))
    assert available_engines("cpu", importable=lambda name: True) == ["torch", "onnxruntime"]
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        check_fp16("cpu", True)


def test_an_export_without_the_novelty_output_reports_zero_novelty(pose_checkpoint):
    """ONNX files and TensorRT engines exported before the novelty output give logits and
    importance only: every engine then reports novelty 0 (never held against a window)."""
    from star_har.realtime.engines.base import InferenceEngine

    class OlderExport(InferenceEngine):
        name, device = "older", "cpu"

        def _infer(self, frames, keypoints):
            return np.ones((len(keypoints), len(CLASS_NAMES))), np.full(keypoints.shape[:2], 1 / keypoints.shape[1])

    spec = ModelSpec.from_checkpoint(pose_checkpoint)
    scores = OlderExport(spec).infer(*spec.example_inputs(batch=2))
    assert scores.novelty.shape == (2,) and not scores.novelty.any() and scores.logits.dtype == np.float32
