import pytest
import torch

from star_har.model import CheckpointError, TemporalSampling, build_model, load_checkpoint, save_checkpoint
from star_har.train.engine import crop_meta

CLASSES = ["wave", "jump", "sit"]


def _save(path, **overrides):
    net = build_model("star", 3, modality="pose", dim=32, depth=1, num_heads=2)
    kwargs = dict(model_name="star", class_names=CLASSES, joint_layout="penn13",
                  sampling=TemporalSampling(16, 1.6), meta={"epochs": 3, "val_top1": 0.5})
    kwargs.update(overrides)
    save_checkpoint(path, net, **kwargs)
    return net


def test_round_trip_restores_weights_config_and_metadata(tmp_path):
    path = tmp_path / "ck.pt"
    net = _save(path).eval()
    ck = load_checkpoint(path)
    assert (ck.model_name, ck.class_names, ck.joint_layout) == ("star", CLASSES, "penn13")
    assert ck.sampling == TemporalSampling(16, 1.6) and ck.sampling.frame_interval == pytest.approx(0.1)
    assert ck.meta["val_top1"] == 0.5 and ck.hparams["modality"] == "pose"
    rebuilt = ck.build()
    kp = torch.rand(2, 16, 13, 3) * 100
    with torch.no_grad():
        assert torch.equal(net(None, kp).logits, rebuilt(None, kp).logits)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_rgb_crops_are_read_from_the_training_config_into_the_checkpoint(tmp_path):
    """The crop size and region an RGB model was trained on travel in its checkpoint (the ring
    buffer cuts the same crops live); pose models record none."""
    data = {"image_size": 64, "crop_region": "upper_body"}
    assert crop_meta({"data": data}, "pose") == {}
    meta = crop_meta({"data": data}, "rgb+pose")
    net = build_model("star", 3, modality="rgb+pose", dim=32, depth=1, num_heads=2)
    save_checkpoint(tmp_path / "rgb.pt", net, model_name="star", class_names=CLASSES, joint_layout="penn13",
                    sampling=TemporalSampling(16, 1.6), meta=meta)
    ck = load_checkpoint(tmp_path / "rgb.pt")
    assert (ck.input_size, ck.crop_region) == ((64, 64), "upper_body")
    _save(tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").crop_region == "body"   # checkpoints from before: the whole body


def test_missing_corrupt_and_foreign_files_give_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    path = tmp_path / "ck.pt"
    _save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a star-har checkpoint"):
        load_checkpoint(foreign)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)


def test_save_checks_class_names_and_layout(tmp_path):
    with pytest.raises(ValueError, match="class names"):
        _save(tmp_path / "a.pt", class_names=["one"])
    with pytest.raises(KeyError):
        _save(tmp_path / "b.pt", joint_layout="smpl")


def test_pickled_objects_are_refused_as_not_a_checkpoint(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"format": "star-har-checkpoint", "payload": object()}, path)
    with pytest.raises(CheckpointError, match="is not a star-har checkpoint .it holds pickled Python objects"):
        load_checkpoint(path)


def _edit(path, change):
    raw = torch.load(path, weights_only=True)
    change(raw)
    torch.save(raw, path)


@pytest.mark.parametrize("change, message", [
    (lambda raw: raw["class_names"].pop(), "the model has 3 outputs but 2 class names"),
    (lambda raw: raw["sampling"].update(frames_per_window=0), "invalid sampling"),
])
def test_inconsistent_headers_are_refused_on_load(tmp_path, change, message):
    path = tmp_path / "ck.pt"
    _save(path)
    _edit(path, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize("change, message", [
    (lambda raw: raw["model"]["hparams"].update(dim=64), "weights do not match .* header .other shape"),
    (lambda raw: raw["state_dict"].pop("head.1.weight"), "weights do not match .* header .missing: head.1.weight"),
    (lambda raw: raw["model"]["hparams"].update(wings=2), "arguments do not fit this star-har"),
])
def test_weights_that_do_not_fit_the_header_are_one_line_errors(tmp_path, change, message):
    path = tmp_path / "ck.pt"
    _save(path)
    _edit(path, change)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path).build()
    assert "\n" not in str(info.value)
