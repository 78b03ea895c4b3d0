"""Frame importance: the occlusion ground truth, the fitted head, engine parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from star_har.model import ActionOutput, TemporalSampling, build_model, save_checkpoint
from star_har.model.importance import (
    GradientImportance,
    interpolation_residuals,
    occlude_frame,
    occluded_windows,
    occlusion_drops,
    spearman,
)
from star_har.train.importance import collect, fit_head, with_importance_head
from tests.realtime_helpers import CLASS_NAMES


def test_occluded_frame_is_the_interpolation_of_its_visible_neighbours():
    keypoints = np.zeros((1, 4, 2, 3), np.float32)
    keypoints[0, :, :, 0] = [[0, 0], [2, 2], [9, 9], [4, 4]]
    keypoints[..., 2] = 1.0
    keypoints[0, 3, 1, 2] = 0.0                      # joint 1 unseen in frame 3
    out = occlude_frame(keypoints, 2, axis=1, confidence=True)
    assert out[0, 2, 0, 0] == 3.0 and out[0, 2, 0, 2] == 1.0   # mean of frames 1 and 3
    assert out[0, 2, 1, 0] == 2.0                    # only frame 1 sees joint 1: copied from it
    assert np.array_equal(np.delete(out, 2, axis=1), np.delete(keypoints, 2, axis=1))
    edge = occlude_frame(keypoints, 0, axis=1, confidence=True)
    assert edge[0, 0, 0, 0] == 2.0                   # first frame: its only neighbour
    _, batch = occluded_windows(None, keypoints)
    assert batch.shape == (4, 4, 2, 3) and np.array_equal(batch[2], out[0])


def test_residuals_measure_what_occlusion_changes():
    keypoints = torch.rand(2, 6, 13, 3)
    keypoints[..., 2] = 1.0
    residuals = interpolation_residuals(keypoints, 0.2)
    expected = np.linalg.norm(occlude_frame(keypoints.numpy(), 3, axis=1, confidence=True)[:, 3, :, :2]
                              - keypoints.numpy()[:, 3, :, :2], axis=-1)
    assert torch.allclose(residuals[:, 3], torch.from_numpy(expected), atol=1e-6)


def test_spearman_of_known_rankings():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a * 10) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.ones(4)) == 0.0
    assert spearman(np.array([1.0, 1.0, 2.0]), np.array([0.0, 0.0, 5.0])) == pytest.approx(1.0)


class OneFrameDecides(nn.Module):
    """A model whose class 0 logit is how far joint 0 rises in frame 5 above its other frames."""

    def forward(self, frames, keypoints):
        rise = keypoints[:, 5, 0, 1] - keypoints[:, :, 0, 1].mean(1)
        return ActionOutput(torch.stack((rise, -rise), dim=1), torch.full(keypoints.shape[:2], 1 / 16),
                            torch.zeros(len(keypoints)))


def test_occlusion_ground_truth_ranks_the_deciding_frame_first():
    keypoints = np.random.default_rng(0).uniform(0, 1, (1, 16, 13, 3)).astype(np.float32)
    keypoints[..., 2] = 1.0
    keypoints[0, 5, 0, 1] += 5.0
    model = OneFrameDecides()
    logits = model(None, torch.from_numpy(keypoints)).logits[0].numpy()
    _, occluded = occluded_windows(None, keypoints)
    drops = occlusion_drops(logits, model(None, torch.from_numpy(occluded)).logits.numpy(), int(logits.argmax()))
    assert logits.argmax() == 0 and drops.argmax() == 5 and drops[5] > 10 * np.abs(np.delete(drops, 5)).max()


def test_gradient_importance_ranks_the_deciding_frame_first():
    keypoints = torch.rand(3, 16, 13, 3, generator=torch.Generator().manual_seed(0))
    keypoints[..., 2] = 1.0
    keypoints[:, 5, 0, 1] += torch.tensor([5.0, 1.0, 0.5])
    model = OneFrameDecides()
    with torch.no_grad():  # as engines call it: the estimate turns gradients on for itself
        out = GradientImportance(model)(None, keypoints)
    assert torch.equal(out.logits, model(None, keypoints).logits)
    assert (out.frame_importance.argmax(1) == 5).all()
    assert torch.allclose(out.frame_importance.sum(1), torch.ones(3)) and (out.frame_importance >= 0).all()


def test_gradient_importance_follows_occlusion_on_a_trained_model():
    """On the spike model of the head test below, the estimate finds the frame occlusion finds."""
    net = spike_classifier()
    held = [w for w in spike_windows(20, seed=2) if w["label"]]
    keypoints = torch.stack([w["keypoints"] for w in held])
    bars = GradientImportance(net)(None, keypoints).frame_importance
    assert (bars.argmax(1) == torch.stack([w["frame"] for w in held])).float().mean() >= 0.8
    logits = net(None, keypoints).logits.detach().numpy()
    agreement = []
    for i in range(len(held)):
        _, occluded = occluded_windows(None, keypoints[i:i + 1].numpy())
        with torch.no_grad():
            drops = occlusion_drops(logits[i], net(None, torch.from_numpy(occluded)).logits.numpy(), int(logits[i].argmax()))
        agreement.append(spearman(bars[i].numpy(), drops))
    assert np.median(agreement) >= 0.5, agreement


def spike_windows(count: int, seed: int) -> list[dict]:
    """Windows of a standing skeleton; in class 1 every joint jumps up in one random frame."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        keypoints = np.zeros((16, 13, 3), np.float32)
        keypoints[..., 0] = rng.uniform(80, 120, 13)
        keypoints[..., 1] = np.linspace(20, 200, 13)
        keypoints[..., :2] += rng.normal(0, 1.0, (16, 13, 2))
        keypoints[..., 2] = 1.0
        label, frame = i % 2, int(rng.integers(2, 14))
        if label:
            keypoints[frame, :, 1] -= 40.0
        items.append({"keypoints": torch.from_numpy(keypoints), "label": torch.tensor(label),
                      "frame": torch.tensor(frame)})
    return items


def spike_classifier() -> nn.Module:
    """A tiny STAR trained to tell still windows from windows with a spike (eval mode)."""
    torch.manual_seed(0)
    net = build_model("star", 2, modality="pose", num_joints=13, layout="penn13", dim=32, depth=1, num_heads=2,
                      dropout=0.0, joint_features=["field", "kinematics"])
    train = spike_windows(48, seed=1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    keypoints, labels = torch.stack([w["keypoints"] for w in train]), torch.stack([w["label"] for w in train])
    for _ in range(30):
        loss = nn.functional.cross_entropy(net(None, keypoints).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net.eval()


def test_fitted_head_ranks_the_frame_that_decides_first(tmp_path):
    net = spike_classifier()
    train = spike_windows(48, seed=1)
    path = tmp_path / "spike.pt"
    save_checkpoint(path, net, model_name="star", class_names=["still", "jump"], joint_layout="penn13",
                    sampling=TemporalSampling(16, 1.6))
    from star_har.model import load_checkpoint
    with_head = with_importance_head(load_checkpoint(path))
    fit_head(with_head.importance_head, collect(with_head, train, progress=False), steps=300)
    held = [w for w in spike_windows(40, seed=2) if w["label"]]
    with torch.no_grad():
        out = with_head(None, torch.stack([w["keypoints"] for w in held]))
    assert (out.logits.argmax(1) == 1).float().mean() >= 0.9  # the classifier learned the spike
    found = (out.frame_importance.argmax(1) == torch.stack([w["frame"] for w in held])).float().mean()
    assert found >= 0.8, found
    assert torch.allclose(out.frame_importance.sum(1), torch.ones(len(held)), atol=1e-5)


def test_head_checkpoint_predicts_exactly_as_before(tmp_path):
    torch.manual_seed(0)
    net = build_model("star", len(CLASS_NAMES), modality="pose", num_joints=13, dim=32, depth=1, num_heads=2)
    path = tmp_path / "plain.pt"
    save_checkpoint(path, net, model_name="star", class_names=CLASS_NAMES, joint_layout="penn13",
                    sampling=TemporalSampling(16, 1.6))
    from star_har.model import load_checkpoint
    with_head = with_importance_head(load_checkpoint(path))
    keypoints = torch.rand(3, 16, 13, 3) * 100
    with torch.no_grad():
        assert torch.equal(with_head(None, keypoints).logits, net.eval()(None, keypoints).logits)


@pytest.fixture(scope="module")
def head_engines(tmp_path_factory):
    """Torch and ONNX Runtime engines of a tiny kinematics STAR checkpoint with an importance head."""
    from star_har.model import load_checkpoint
    from star_har.realtime.engines import create_engine

    root = tmp_path_factory.mktemp("head")
    torch.manual_seed(0)
    net = build_model("star", len(CLASS_NAMES), modality="pose", num_joints=13, layout="penn13", dim=32, depth=1,
                      num_heads=2, joint_features=["field", "kinematics"], temporal_kernel=3, importance_head=True)
    for parameter in net.importance_head.parameters():  # a head that is not all zeros
        torch.nn.init.normal_(parameter, std=0.5)
    save_checkpoint(root / "head.pt", net, model_name="star", class_names=CLASS_NAMES, joint_layout="penn13",
                    sampling=TemporalSampling(16, 1.6))
    ck = load_checkpoint(root / "head.pt")
    return (create_engine(ck, "torch", "cpu"),
            create_engine(ck, "onnxruntime", "cpu", cache_dir=root / "cache", threads=1))


def test_head_importance_is_the_same_on_every_engine(head_engines):
    reference, candidate = head_engines
    frames, keypoints = reference.spec.example_inputs(3, 1)
    keypoints[0, 2, :5, 2] = 0.0
    ref_logits, ref_importance, _ = reference.infer(frames, keypoints)
    logits, importance, _ = candidate.infer(frames, keypoints)
    assert np.abs(logits - ref_logits).max() < 1e-4 and np.abs(importance - ref_importance).max() < 1e-5
    assert ref_importance.std(1).min() > 1e-4  # the head's bars, not a uniform placeholder


def test_occlusion_importance_is_the_same_on_every_engine(head_engines):
    from star_har.realtime.importance import OcclusionImportance

    reference, candidate = (OcclusionImportance(engine) for engine in head_engines)
    frames, keypoints = reference.spec.example_inputs(2, 2)
    ref_logits, ref_importance, _ = reference.infer(frames, keypoints)
    logits, importance, _ = candidate.infer(frames, keypoints)
    assert np.allclose(logits, head_engines[0].infer(frames, keypoints)[0], atol=1e-5)  # predictions unchanged
    assert np.abs(importance - ref_importance).max() < 1e-3 and np.allclose(importance.sum(1), 1.0, atol=1e-5)
    assert reference.name == head_engines[0].name  # the wrapper is transparent


def test_occlusion_importance_respects_an_engines_batch_limit(head_engines):
    """A TensorRT engine takes at most ``max_batch`` windows per call: the copies are chunked."""
    from star_har.realtime.importance import occlusion_infer

    class Limited:
        max_batch, calls = 5, []

        def infer(self, frames, keypoints):
            assert len(keypoints) <= self.max_batch
            self.calls.append(len(keypoints))
            return head_engines[0].infer(frames, keypoints)

    frames, keypoints = head_engines[0].spec.example_inputs(2, 3)
    limited = Limited()
    logits, importance, novelty = occlusion_infer(limited, frames, keypoints)
    reference = occlusion_infer(head_engines[0], frames, keypoints)
    assert sum(limited.calls) == 2 * 17 and np.allclose(logits, reference[0], atol=1e-5)
    assert np.allclose(importance, reference[1], atol=1e-4) and np.allclose(novelty, reference.novelty, atol=1e-4)


@pytest.mark.parametrize("modality", ["pose", "rgb+pose"])
def test_gradient_importance_is_the_same_on_every_engine(tmp_path, modality):
    """The ONNX graph carries the backward pass: ONNX Runtime reports the torch engine's bars."""
    from star_har.model import load_checkpoint
    from star_har.realtime.engines import create_engine
    from tests.realtime_helpers import tiny_checkpoint

    ck = load_checkpoint(tiny_checkpoint(tmp_path / "tiny.pt", modality))
    reference = create_engine(ck, "torch", "cpu", gradient_importance=True)
    candidate = create_engine(ck, "onnxruntime", "cpu", cache_dir=tmp_path / "cache", threads=1,
                              gradient_importance=True)
    assert reference.importance == candidate.importance == "gradient"
    frames, keypoints = reference.spec.example_inputs(3, 1)
    keypoints[0, 2, :5, 2] = 0.0
    ref_logits, ref_importance, _ = reference.infer(frames, keypoints)
    logits, importance, _ = candidate.infer(frames, keypoints)
    assert np.abs(logits - create_engine(ck, "torch", "cpu").infer(frames, keypoints).logits).max() < 1e-5
    # an RGB frame's estimate sums gradient x change over all its pixels: float32 rounding adds up
    tolerance = 1e-3 if modality == "pose" else 5e-3
    assert np.abs(logits - ref_logits).max() < 1e-4 and np.abs(importance - ref_importance).max() < tolerance
    assert (importance.argmax(1) == ref_importance.argmax(1)).all()
    assert ref_importance.std(1).min() > 1e-3  # real estimates, not uniform bars
    if modality == "pose":  # the window length stays dynamic in the exported graph
        short = candidate.infer(None, keypoints[:, :8])
        assert np.abs(short.frame_importance - reference.infer(None, keypoints[:, :8]).frame_importance).max() < 1e-3


def test_auto_importance_measures_on_a_gpu_and_estimates_on_a_cpu():
    from star_har.realtime.importance import resolve_importance

    assert resolve_importance("auto", "cuda:0") == resolve_importance("auto", "cuda") == "occlusion"
    assert resolve_importance("auto", "cpu") == "model"
    assert resolve_importance("occlusion", "cpu") == "occlusion" and resolve_importance("model", "cuda") == "model"
