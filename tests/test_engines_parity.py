"""ONNX export and torch vs ONNX Runtime parity for every model, through the public entry points
(``star-har export`` and ``create_engine``). Exports are the slow part (~15-40 s each on 2 CPU
cores), so each model is exported once per module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from star_har.cli import main
from star_har.model import TemporalSampling, build_model, list_models, load_checkpoint, save_checkpoint
from star_har.realtime.engines import ModelSpec, create_engine
from star_har.realtime.engines.onnx_engine import OnnxRuntimeEngine
from star_har.realtime.engines.torch_engine import TorchEngine
from star_har.realtime.export import read_onnx_metadata, read_onnx_spec
from tests.realtime_helpers import CLASS_NAMES, tiny_checkpoint


def assert_parity(reference, candidate, batch: int, num_frames: int | None = None, seed: int = 0) -> None:
    """Same top-1, logits within 1e-4, importance within 1e-5 and novelty within 1e-4 (relative)
    on random windows."""
    spec = reference.spec
    if num_frames is not None:
        spec = ModelSpec(**{**spec.__dict__, "frames_per_window": num_frames})
    frames, keypoints = spec.example_inputs(batch, seed)
    keypoints[0, 1, :4, 2] = 0.0  # some invisible joints, as real poses have
    ref_logits, ref_importance, ref_novelty = reference.infer(frames, keypoints)
    logits, importance, novelty = candidate.infer(frames, keypoints)
    assert logits.shape == (batch, len(spec.class_names)) and importance.shape == (batch, keypoints.shape[1])
    np.testing.assert_allclose(novelty, ref_novelty, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(logits.argmax(1), ref_logits.argmax(1))
    assert np.abs(logits - ref_logits).max() < 1e-4
    assert np.abs(importance - ref_importance).max() < 1e-5
    np.testing.assert_allclose(importance.sum(1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def pose_export(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, .onnx written by `star-har export`) for a tiny STAR pose model."""
    root = tmp_path_factory.mktemp("pose")
    checkpoint = tiny_checkpoint(root / "pose.pt", "pose", novelty=True)
    output = root / "exported" / "pose.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output)]) == 0
    return checkpoint, output


def test_export_cli_writes_a_valid_self_describing_onnx(pose_export, capsys):
    checkpoint, output = pose_export
    onnx.checker.check_model(str(output), full_check=True)
    graph = onnx.load(str(output)).graph
    assert [i.name for i in graph.input] == ["keypoints"]  # pose-only: no frames input at all
    assert [o.name for o in graph.output] == ["logits", "frame_importance", "novelty"]
    batch_dim, time_dim = graph.input[0].type.tensor_type.shape.dim[:2]
    assert batch_dim.dim_param and time_dim.dim_param  # dynamic batch and window length
    spec = read_onnx_spec(output)
    assert spec.class_names == tuple(CLASS_NAMES) and spec.joint_layout == "penn13"
    assert spec.frames_per_window == 16 and spec.window_seconds == pytest.approx(1.6)
    assert spec.input_size is None and not spec.needs_frames
    metadata = read_onnx_metadata(output)
    assert metadata["model"] == "star" and len(metadata["model_sha256"]) == 64
    assert "keypoints" in metadata["input_layout"]


def test_star_pose_parity_from_the_onnx_file_alone(pose_export):
    checkpoint, output = pose_export
    ck = load_checkpoint(checkpoint)
    reference = TorchEngine(ck.build(), ModelSpec.from_checkpoint(ck))
    engine = OnnxRuntimeEngine(output, read_onnx_spec(output), threads=1)
    for batch in (1, 3):
        assert_parity(reference, engine, batch, seed=batch)
    assert (engine.infer(*reference.spec.example_inputs(3)).novelty > 0).all()  # the fitted head, exported
    assert_parity(reference, engine, 2, num_frames=8)  # another even window length


def test_star_rgb_pose_parity_and_export_cache(tmp_path, monkeypatch):
    ck = load_checkpoint(tiny_checkpoint(tmp_path / "rgb.pt", "rgb+pose"))
    reference = create_engine(ck, "torch", "cpu")
    assert create_engine(ck, device="cpu").name == "torch"  # the automatic choice for RGB on CPU
    engine = create_engine(ck, "onnxruntime", "cpu", cache_dir=tmp_path / "cache", threads=1)
    assert engine.needs_frames and engine.input_size == (112, 112)
    for batch in (1, 3):
        assert_parity(reference, engine, batch, seed=batch)
    # A second engine for the same weights reuses the cached export instead of exporting again.
    monkeypatch.setattr("star_har.realtime.export.export_onnx", lambda *a, **k: pytest.fail("exported twice"))
    create_engine(ck, "onnxruntime", "cpu", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1


def test_star_pose_test_time_flip_parity(tmp_path):
    """The flip's mirrored batch and its class table (swipe_left <-> swipe_right) are exported too."""
    torch.manual_seed(0)
    names = ["swipe_left", "wave", "swipe_right"]
    net = build_model("star", 3, modality="pose", num_joints=13, layout="penn13", dim=32, depth=1, num_heads=2,
                      joint_features=["field", "kinematics"], flip_test=True, mirror_classes=[2, 1, 0])
    save_checkpoint(tmp_path / "flip.pt", net, model_name="star", class_names=names, joint_layout="penn13",
                    sampling=TemporalSampling(16, 1.6))
    ck = load_checkpoint(tmp_path / "flip.pt")
    reference = create_engine(ck, "torch", "cpu")
    engine = create_engine(ck, "onnxruntime", "cpu", cache_dir=tmp_path / "cache", threads=1)
    for batch in (1, 3):
        assert_parity(reference, engine, batch, seed=batch)


def test_deformable_parity(tmp_path):
    if "deformable" not in list_models():
        pytest.skip("model 'deformable' is not registered")
    torch.manual_seed(0)
    net = build_model("deformable", 5, modality="rgb+pose", num_joints=13, dim=32, depth=1, num_heads=2)
    save_checkpoint(tmp_path / "d.pt", net, model_name="deformable", class_names=list("abcde"),
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.6), meta={"input_size": [112, 112]})
    ck = load_checkpoint(tmp_path / "d.pt")
    reference = create_engine(ck, "torch", "cpu")
    engine = create_engine(ck, "onnxruntime", "cpu", cache_dir=tmp_path / "cache", threads=1)
    for batch in (1, 3):
        assert_parity(reference, engine, batch, seed=batch)


def test_export_cli_bad_checkpoint_is_one_line_error(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    for path in (tmp_path / "missing.pt", corrupt):
        assert main(["export", "--checkpoint", str(path), "--output", str(tmp_path / "x.onnx")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("star-har export: error:") and str(path) in err and "\n" not in err
    assert not (tmp_path / "x.onnx").exists()


def test_export_cli_rejects_fp16_onnx(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "pose.pt", "pose")
    assert main(["export", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "x.onnx"), "--fp16"]) == 2
    assert "--fp16 applies to --format tensorrt" in capsys.readouterr().err


def test_star_pose_with_joint_depth_parity(tmp_path):
    """A model with depth exports a four-channel keypoint input; both engines refuse three channels."""
    torch.manual_seed(0)
    net = build_model("star", 3, modality="pose", num_joints=13, layout="penn13", dim=32, depth=1, num_heads=2,
                      joint_features=["field", "kinematics"], joint_depth=True)
    save_checkpoint(tmp_path / "depth.pt", net, model_name="star", class_names=CLASS_NAMES[:3], joint_layout="penn13",
                    sampling=TemporalSampling(16, 1.6))
    ck = load_checkpoint(tmp_path / "depth.pt")
    reference = create_engine(ck, "torch", "cpu")
    engine = create_engine(ck, "onnxruntime", "cpu", cache_dir=tmp_path / "cache", threads=1)
    assert engine.spec.keypoint_channels == 4
    assert_parity(reference, engine, 2)
    _, keypoints = engine.spec.example_inputs(1)
    assert np.ptp(keypoints[..., 3]) > 0  # the example windows exercise the depth inputs
    for candidate in (reference, engine):
        with pytest.raises(ValueError, match=r"\(B, T, 13, 4\)"):
            candidate.infer(None, keypoints[..., :3])
