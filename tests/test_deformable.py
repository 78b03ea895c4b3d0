import numpy as np
import pytest
import torch
import torch.nn.functional as F

from star_har.model import TemporalSampling, build_model, load_checkpoint, save_checkpoint
from star_har.model.deformable import (
    JointStrideAttention,
    TemporalStrideAttention,
    TokenSearch3D,
    merge_stride_windows,
    stride_windows,
    trilinear_sample,
)

TINY = dict(dim=32, depth=1, num_heads=2, dropout=0.0)


def random_keypoints(batch, frames, joints, size, seed=0):
    generator = torch.Generator().manual_seed(seed)
    kp = torch.rand(batch, frames, joints, 3, generator=generator)
    kp[..., :2] *= size
    kp[..., 2] = 1.0
    return kp


def tiny_model(**cfg):
    torch.manual_seed(0)
    return build_model("deformable", 4, **{**TINY, **cfg}).eval()


@pytest.mark.parametrize("frames,height,width,joints", [(16, 32, 48, 13), (8, 48, 32, 17), (2, 32, 32, 25)])
def test_shapes_and_importance(frames, height, width, joints):
    net = tiny_model(num_joints=joints)
    with torch.no_grad():
        out = net(torch.randn(2, 3, frames, height, width), random_keypoints(2, frames, joints, height))
    assert out.logits.shape == (2, 4)
    assert out.frame_importance.shape == (2, frames)
    assert torch.allclose(out.frame_importance.sum(1), torch.ones(2))
    assert (out.frame_importance >= 0).all()
    assert net.hparams["num_classes"] == 4 and net.hparams["modality"] == "rgb+pose"


def test_gradients_reach_every_parameter_including_the_token_search():
    net = tiny_model()
    net.train()
    out = net(torch.randn(2, 3, 8, 32, 32), random_keypoints(2, 8, 13, 32))
    (out.logits.square().sum() + out.frame_importance.square().sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"
    names = {n for n, _ in net.named_parameters()}
    assert {"blocks.0.deformable.search.conv.weight", "blocks.0.deformable.search.to_offset.weight",
            "blocks.0.joint_stride.pad"} <= names


def test_trilinear_sampling_matches_a_reference():
    volume = torch.randn(2, 3, 4, 5, 6)  # (B, T, H, W, D)
    integer = torch.tensor([[[0, 0, 0], [2, 3, 4], [1, 2, 0]]] * 2, dtype=torch.float32)
    sampled = trilinear_sample(volume, integer)
    for b in range(2):
        for s, (t, y, x) in enumerate(integer[b].long().tolist()):
            assert torch.allclose(sampled[b, s], volume[b, t, y, x])
    # Linear in between two cells, along each axis and diagonally.
    mid = trilinear_sample(volume, torch.tensor([[[0.25, 1, 1], [1, 1.5, 2], [1.5, 0.5, 4.75]]] * 2))
    assert torch.allclose(mid[:, 0], 0.75 * volume[:, 0, 1, 1] + 0.25 * volume[:, 1, 1, 1], atol=1e-6)
    assert torch.allclose(mid[:, 1], (volume[:, 1, 1, 2] + volume[:, 1, 2, 2]) / 2, atol=1e-6)
    # grid_sample (align_corners=True, border padding) as an independent reference, also off-grid.
    points = torch.rand(2, 50, 3) * torch.tensor([4.0, 6.0, 8.0]) - 1  # some outside the volume
    sizes = torch.tensor([3.0, 4.0, 5.0])
    grid = (points.flip(-1) / (sizes.flip(-1) - 1) * 2 - 1).reshape(2, 50, 1, 1, 3)
    reference = F.grid_sample(volume.permute(0, 4, 1, 2, 3), grid, align_corners=True, padding_mode="border")
    assert torch.allclose(trilinear_sample(volume, points), reference.reshape(2, 6, 50).transpose(1, 2), atol=1e-5)


def test_token_search_is_the_papers_kernel_7_without_padding_on_a_regular_grid():
    conv = tiny_model().blocks[0].deformable.search.conv
    assert conv.kernel_size == (7, 7, 7) and conv.padding == (0, 0, 0) and conv.stride == (1, 1, 1)
    search = TokenSearch3D(8, kernel=7, offset_range=0.5)
    z = torch.randn(1, 9, 8, 10, 8)  # (B, T, H, W, D)
    with torch.no_grad():
        search.to_offset.weight.zero_()
        search.to_offset.bias.zero_()
        points = search(z)
        assert points.shape == (1, 3 * 2 * 4, 3)  # (T - 6) x (H - 6) x (W - 6) reference points
        assert torch.equal(points[0, 0], torch.tensor([3.0, 3.0, 3.0]))  # centre of the first 7^3 cube
        assert torch.equal(points[0, -1], torch.tensor([5.0, 4.0, 6.0]))  # (T - 4, H - 4, W - 4)
        assert torch.equal(points[0, 1] - points[0, 0], torch.tensor([0.0, 0.0, 1.0]))  # unit grid
        search.to_offset.bias.fill_(100.0)  # saturates tanh: offset = offset_range * kernel
        assert torch.allclose(search(z) - points, torch.full((1, 24, 3), 3.5))
        # An axis shorter than k is padded up to k: one reference point, inside the 4 frames.
        search.to_offset.bias.zero_()
        short = search(torch.randn(1, 4, 8, 8, 8))
    assert short.shape == (1, 1 * 2 * 2, 3) and short[0, 0, 0] == 2.0


def test_offsets_move_the_sampled_positions_and_the_outputs():
    net = tiny_model()
    frames, kp = torch.randn(1, 3, 8, 32, 32), random_keypoints(1, 8, 13, 32)
    block = net.blocks[0].deformable
    seen = []
    block.search.register_forward_hook(lambda module, args, out: seen.append(out.clone()))
    with torch.no_grad():
        before = net(frames, kp)
        block.search.to_offset.weight.add_(torch.randn_like(block.search.to_offset.weight))
        after = net(frames, kp)
    assert (seen[0] - seen[1]).abs().max() > 0.1
    assert not torch.allclose(before.logits, after.logits, atol=1e-5)
    assert not torch.allclose(before.frame_importance, after.frame_importance, atol=1e-5)


def test_stride_windows_cover_every_step_with_half_window_overlaps():
    steps = torch.arange(12).reshape(1, 12)
    windows = stride_windows(steps, 4)[0]
    assert windows.shape == (5, 4)
    assert torch.equal(windows[:, 0], torch.arange(0, 10, 2))            # stride = window / 2
    for first, second in zip(windows[:-1], windows[1:]):
        assert len(set(first.tolist()) & set(second.tolist())) == 2    # overlap = window / 2
    assert set(windows.flatten().tolist()) == set(range(12))
    x = torch.randn(3, 12, 5, 7)
    assert torch.allclose(merge_stride_windows(stride_windows(x, 4)), x)
    counts = merge_stride_windows(torch.ones(1, 5, 4))
    assert torch.equal(counts, torch.ones(1, 12))


def test_temporal_windows_limit_who_sees_whom():
    torch.manual_seed(0)
    module = TemporalStrideAttention(16, 2, window=4).eval()
    x = torch.randn(1, 12, 3, 16)
    changed = x.clone()
    changed[:, 5] += torch.randn(3, 16)  # random, not constant: LayerNorm would cancel a shift
    with torch.no_grad():
        moved = (module(changed) - module(x)).abs().amax(dim=(0, 2, 3))
    assert [t for t in range(12) if moved[t] > 1e-6] == [2, 3, 4, 5, 6, 7]  # windows [2..5], [4..7]


def test_joint_windows_span_all_frames_and_pad_odd_joint_counts():
    torch.manual_seed(0)
    module = JointStrideAttention(16, 2, num_joints=13, window=4).eval()
    assert module.pad.shape == (1, 16)  # 13 joints + 1 padding token = 7 chunks of 2
    p, m_pose, m_cls = torch.randn(1, 6, 13, 16), torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    changed = p.clone()
    changed[:, 1, 12] += torch.randn(16)  # joint 12 in frame 1 only
    with torch.no_grad():
        base, out = module(p, m_pose, m_cls), module(changed, m_pose, m_cls)
    moved = (out[0] - base[0]).abs().amax(dim=(0, 3)) > 1e-6                     # (T, J)
    # Algorithm A1: a window holds its joints in all T frames, so every frame's joints 10-12 move.
    assert moved[:, 10:].all() and not moved[:, :10].any()
    assert ((out[1] - base[1]).abs().amax(dim=(0, 2)) > 1e-6).all()  # M_pose of every frame
    assert ((out[2] - base[2]).abs().amax(dim=(0, 2)) > 1e-6).all()  # M_CLS of every frame


def test_joint_window_bookkeeping():
    module = JointStrideAttention(16, 2, num_joints=13, window=4).eval()
    shapes = []
    module.attn.register_forward_hook(lambda mod, args, out: shapes.append(args[0].shape))
    with torch.no_grad():
        module(torch.randn(2, 6, 13, 16), torch.randn(2, 6, 16), torch.randn(2, 6, 16))
    # 6 windows (14 padded joints, stride 2) per sample, each T x (4 joints + M_pose + M_CLS) tokens
    assert shapes == [(2 * 6, 6 * (4 + 2), 16)]


def test_pose_branch_reads_the_cls_memorised_by_the_deformable_attention():
    net = tiny_model()
    block, seen = net.blocks[0], {}
    block.register_forward_hook(lambda mod, args, out: seen.update(cls_in=args[2][:, :, 0]))
    block.deformable.register_forward_hook(lambda mod, args, out: seen.update(cls_rgb=out[2]))
    block.joint_stride.register_forward_hook(
        lambda mod, args, out: seen.update(cls_to_pose=args[2], cls_pose=out[2]))
    block.merge_cls.register_forward_hook(lambda mod, args, out: seen.update(merged=args[0]))
    with torch.no_grad():
        net(torch.randn(1, 3, 8, 32, 32), random_keypoints(1, 8, 13, 32))
    assert not torch.allclose(seen["cls_in"], seen["cls_rgb"])  # the deformable attention changed it
    assert torch.equal(seen["cls_to_pose"], seen["cls_rgb"])     # M'_CLS goes to the pose branch
    assert torch.equal(seen["merged"], torch.cat((seen["cls_rgb"], seen["cls_pose"]), dim=-1))


def test_two_people_are_concatenated_along_the_joints():
    net = tiny_model(num_persons=2)
    assert net.hparams["num_persons"] == 2
    frames, kp = torch.randn(1, 3, 4, 32, 32), random_keypoints(1, 4, 26, 32)
    kp[:, :, 13:, 2] = 0.0  # second person absent
    moved = kp.clone()
    moved[:, :, 13:, :2] = torch.rand(1, 4, 13, 2) * 32
    with torch.no_grad():
        base = net(frames, kp).logits
        assert torch.allclose(base, net(frames, moved).logits, atol=1e-6)
        moved[:, :, 13:, 2] = 1.0
        assert not torch.allclose(base, net(frames, moved).logits, atol=1e-5)
    with pytest.raises(ValueError, match="26 joints"):
        net(frames, kp[:, :, :13])


def test_invalid_configurations_and_inputs_are_rejected():
    with pytest.raises(ValueError, match="rgb\\+pose"):
        build_model("deformable", 3, modality="pose", **TINY)
    with pytest.raises(ValueError, match="even"):
        build_model("deformable", 3, joint_window=3, **TINY)
    net = tiny_model()
    with pytest.raises(ValueError, match="needs frames"):
        net(None, random_keypoints(1, 4, 13, 32))
    with pytest.raises(RuntimeError, match="even"):
        net(torch.randn(1, 3, 5, 32, 32), random_keypoints(1, 5, 13, 32))


def test_checkpoint_round_trip(tmp_path):
    net = tiny_model(num_persons=2)
    save_checkpoint(tmp_path / "d.pt", net, model_name="deformable", class_names=list("abcd"),
                    joint_layout="penn13", sampling=TemporalSampling(4, 0.4))
    rebuilt = load_checkpoint(tmp_path / "d.pt").build()
    frames, kp = torch.randn(1, 3, 4, 32, 32), random_keypoints(1, 4, 26, 32)
    with torch.no_grad():
        assert torch.allclose(net(frames, kp).logits, rebuilt(frames, kp).logits)


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny_model()
    frames, kp = torch.randn(1, 3, 4, 32, 32), random_keypoints(1, 4, 13, 32)
    path = tmp_path / "deformable.onnx"
    torch.onnx.export(net, (frames, kp), path, dynamo=True, input_names=["frames", "keypoints"],
                      output_names=["logits", "frame_importance", "novelty"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, importance, novelty = session.run(None, {"frames": frames.numpy(), "keypoints": kp.numpy()})
    assert not novelty.any()  # no novelty head
    with torch.no_grad():
        ref = net(frames, kp)
    assert logits.argmax(1) == ref.logits.argmax(1).numpy()
    assert np.abs(logits - ref.logits.numpy()).max() < 1e-4
    assert np.abs(importance - ref.frame_importance.numpy()).max() < 1e-5


@pytest.mark.parametrize("joints", [1, 2, 3, 5])
def test_joint_windows_handle_fewer_joints_than_a_window(joints):
    module = JointStrideAttention(8, 2, num_joints=joints, window=4)
    p, m_pose, m_cls = module(torch.randn(2, 3, joints, 8), torch.randn(2, 3, 8), torch.randn(2, 3, 8))
    assert p.shape == (2, 3, joints, 8) and m_pose.shape == m_cls.shape == (2, 3, 8)
