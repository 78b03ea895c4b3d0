import pytest
import torch

from star_har.model import build_model
from star_har.model.heatmaps import gaussian_heatmaps, joint_map_tokens, normalize_to_person_box
from star_har.model.star import SplitTemporalAttention, STARLayer

torch.manual_seed(0)
TINY = dict(dim=32, depth=1, num_heads=2, dropout=0.0)


def random_keypoints(batch, frames, joints, size):
    kp = torch.rand(batch, frames, joints, 3)
    kp[..., :2] *= size
    kp[..., 2] = 1.0
    return kp


@pytest.mark.parametrize("frames,size,joints", [(16, 112, 13), (8, 64, 17), (4, 96, 25)])
def test_rgb_pose_shapes(frames, size, joints):
    net = build_model("star", 5, modality="rgb+pose", num_joints=joints, **TINY).eval()
    out = net(torch.randn(2, 3, frames, size, size), random_keypoints(2, frames, joints, size))
    assert out.logits.shape == (2, 5)
    assert out.frame_importance.shape == (2, frames)
    assert torch.allclose(out.frame_importance.sum(1), torch.ones(2))
    assert (out.frame_importance >= 0).all()


@pytest.mark.parametrize("frames,joints", [(16, 13), (32, 33), (2, 25)])
def test_pose_only_shapes_without_backbone(frames, joints):
    net = build_model("star", 7, modality="pose", num_joints=joints, **TINY).eval()
    assert not any("backbone" in name for name, _ in net.named_parameters())
    out = net(None, random_keypoints(3, frames, joints, 640))
    assert out.logits.shape == (3, 7) and out.frame_importance.shape == (3, frames)


@pytest.mark.parametrize("modality", ["rgb+pose", "pose"])
def test_gradients_reach_every_parameter(modality):
    net = build_model("star", 4, modality=modality, **TINY)
    frames = torch.randn(2, 3, 8, 64, 64) if modality == "rgb+pose" else None
    out = net(frames, random_keypoints(2, 8, 13, 64))
    (out.logits.square().sum() + out.frame_importance.square().sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def _split_outputs(module, frames, cls):
    with torch.no_grad():
        out, _ = module(frames, cls)
    return out


@pytest.mark.parametrize("mode", ["zigzag", "binary"])
def test_split_attention_queries_see_only_the_other_half(mode):
    """a'/a'' (ZAttn) and b'/b'' (BAttn): perturbing a frame of one half leaves the outputs of the
    other frames of the same half unchanged, and changes every frame of the other half."""
    torch.manual_seed(1)
    T, P, D = 8, 5, 16
    module = SplitTemporalAttention(D, 2, mode).eval()
    frames, cls = torch.randn(1, T, P, D), torch.randn(1, 2, D)
    half_a = list(range(0, T, 2)) if mode == "zigzag" else list(range(T // 2))
    half_b = [t for t in range(T) if t not in half_a]
    base = _split_outputs(module, frames, cls)
    for perturbed, same_half, other_half in ((half_a[1], half_a, half_b), (half_b[0], half_b, half_a)):
        changed = frames.clone()
        changed[:, perturbed] += torch.randn(P, D)
        out = _split_outputs(module, changed, cls)
        for t in same_half:
            if t != perturbed:
                assert torch.allclose(out[:, t], base[:, t], atol=1e-6), f"frame {t} saw frame {perturbed}"
        for t in other_half:
            assert not torch.allclose(out[:, t], base[:, t], atol=1e-4), f"frame {t} ignored frame {perturbed}"


def test_full_attention_mixes_all_frames_in_a_layer():
    layer = STARLayer(16, 2, "zigzag").eval()
    frames, cls = torch.randn(1, 4, 3, 16), torch.randn(1, 2, 16)
    with torch.no_grad():
        base, _, attn = layer(frames, cls)
        changed = frames.clone()
        changed[:, 0] += 1
        out, _, _ = layer(changed, cls)
    assert not torch.allclose(out[:, 2], base[:, 2])  # same ZAttn half, reached through FAttn
    assert attn.shape == (1, 4)


def test_heatmap_peaks_at_the_joint_cell_and_invisible_joints_are_zero():
    kp = torch.tensor([[[[0.33, 0.73, 1.0], [0.5, 0.5, 0.0]]]])  # (1, 1, 2, 3)
    maps = gaussian_heatmaps(kp, height=10, width=20, sigma=1.0, min_confidence=0.2)
    assert maps.shape == (1, 1, 2, 10, 20)
    peak = divmod(int(maps[0, 0, 0].argmax()), 20)
    assert peak == (7, 6)  # row int(0.73 * 10), column int(0.33 * 20)
    assert maps[0, 0, 0].max() == pytest.approx(1.0, abs=0.05)
    assert maps[0, 0, 1].abs().sum() == 0


def test_joint_map_tokens_sum_features_under_heatmaps():
    features = torch.randn(2, 4, 3, 6, 6)
    heat = torch.zeros(2, 3, 1, 6, 6)
    heat[..., 2, 4] = 1.0
    tokens = joint_map_tokens(features, heat)
    assert torch.allclose(tokens[:, :, 0], features[..., 2, 4].permute(0, 2, 1))


def test_invisible_joints_do_not_influence_the_prediction():
    net = build_model("star", 3, modality="rgb+pose", **TINY).eval()
    frames, kp = torch.randn(1, 3, 8, 64, 64), random_keypoints(1, 8, 13, 64)
    kp[:, :, 4, 2] = 0.0
    moved = kp.clone()
    moved[:, :, 4, :2] = torch.rand(1, 8, 2) * 64
    with torch.no_grad():
        assert torch.allclose(net(frames, kp).logits, net(frames, moved).logits, atol=1e-6)
        visible = kp.clone()
        visible[:, :, 4, 2] = 1.0
        assert not torch.allclose(net(frames, kp).logits, net(frames, visible).logits, atol=1e-6)


def test_pose_model_is_invariant_to_translation_and_scale():
    net = build_model("star", 3, modality="pose", **TINY).eval()
    kp = random_keypoints(2, 8, 13, 200)
    moved = kp.clone()
    moved[..., :2] = kp[..., :2] * 2.5 + torch.tensor([300.0, -40.0])
    with torch.no_grad():
        assert torch.allclose(net(None, kp).logits, net(None, moved).logits, atol=1e-4)


def test_person_box_ignores_invisible_joints():
    kp = random_keypoints(1, 4, 5, 100)
    kp[0, 0, 0] = torch.tensor([5000.0, 5000.0, 0.0])
    boxed = normalize_to_person_box(kp, 0.2)
    visible = boxed[..., 2] > 0.2
    assert boxed[..., :2][visible].min() >= 0 and boxed[..., :2][visible].max() <= 1


def test_rgb_model_requires_frames_and_rejects_odd_windows():
    net = build_model("star", 3, modality="rgb+pose", **TINY).eval()
    with pytest.raises(ValueError, match="needs frames"):
        net(None, random_keypoints(1, 8, 13, 64))
    with pytest.raises(RuntimeError, match="even"):
        net(torch.randn(1, 3, 7, 64, 64), random_keypoints(1, 7, 13, 64))
    with pytest.raises(ValueError, match="modality"):
        build_model("star", 3, modality="depth")
    with pytest.raises(KeyError, match="available"):
        build_model("nope", 3)
