"""Training on generated data: accuracy, exact resume, fine-tuning, DDP equivalence, CLI errors."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from train_fixtures import make_npz_dataset

from star_har.cli import main
from star_har.model import load_checkpoint
from star_har.train.config import load_config
from star_har.train.engine import train

TINY = {"name": "star", "modality": "pose", "layout": "penn13", "dim": 32, "depth": 1, "num_heads": 2,
        "dropout": 0.0}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run ~10x faster on one thread than on several fighting over a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def npz_data(tmp_path_factory):
    return make_npz_dataset(tmp_path_factory.mktemp("npz"), per_class=12)


def tiny_config(data, output, **extra) -> dict:
    cfg = load_config(None, [f"data.root={data}", "data.kind=npz", f"output={output}", "data.val_fraction=0.25",
                             "data.window_seconds=1.0", "data.eval_windows=2", "batch_size=9", "epochs=2",
                             "optim.name=adamw", "optim.lr=3e-3", "optim.weight_decay=0.0", "num_workers=0"])
    cfg["model"] = dict(TINY)
    # milder than the defaults so that a few CPU epochs suffice
    cfg["augment"] = {"joint_dropout": 0.0, "point_dropout": 0.0, "frame_dropout": 0.0, "lower_body_dropout": 0.0}
    for key, value in extra.items():
        cfg[key] = value
    return cfg


def test_training_on_every_sequence_keeps_the_last_epoch(npz_data, tmp_path):
    """Nothing held out (the final fit of a recipe chosen on validation): every epoch runs and
    best.pt is the last one."""
    cfg = tiny_config(npz_data, tmp_path / "run", epochs=3)
    cfg["data"]["val_fraction"] = 0.0
    summary = train(cfg, progress=False)
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert summary["epochs"] == 3 and summary["best"]["epoch"] == 3 and ck.meta["best_epoch"] == 3
    assert not any(key.startswith("val_") for key in summary["best"]) and ck.meta["dataset"]["val_sequences"] == 0


def test_short_training_reaches_high_accuracy(npz_data, tmp_path):
    cfg = tiny_config(npz_data, tmp_path / "run", epochs=8)
    cfg["data"]["repeats"] = 4
    summary = train(cfg, progress=False, export=tmp_path / "exported.pt")
    assert summary["best"]["val_window_top1"] >= 0.9, summary["best"]
    for name in ("best.pt", "last.pt", "log.csv", "curves.png", "confusion.png", "summary.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert any((tmp_path / "run" / "tensorboard").iterdir())
    ck = load_checkpoint(tmp_path / "exported.pt")
    assert ck.class_names == ["arms_up", "squat", "wave"] and ck.joint_layout == "penn13"
    assert ck.sampling.window_seconds == 1.0 and ck.meta["epochs_run"] == 8 and ck.meta["train_time_s"] > 0
    assert ck.meta["validation"]["val_window_top1"] >= 0.9

    # eval on the same held-out part, through the CLI
    assert main(["eval", "--checkpoint", str(tmp_path / "exported.pt"), "--data", str(npz_data), "--kind", "npz",
                 "--split", "val", "--val-fraction", "0.25", "--output", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["sequences"] == 9 and report["video_top1"] >= 0.85 and (tmp_path / "eval" / "confusion.png").is_file()
    assert set(report["per_class"]) == set(ck.class_names)

    # fine-tune on two of the classes with a new head and a frozen backbone
    cfg = tiny_config(npz_data, tmp_path / "ft", epochs=1, init=str(tmp_path / "exported.pt"), freeze_backbone=True)
    cfg["data"]["classes"] = ["wave", "arms_up"]
    train(cfg, progress=False)
    tuned = load_checkpoint(tmp_path / "ft" / "best.pt")
    assert tuned.class_names == ["wave", "arms_up"] and tuned.num_classes == 2
    for key, value in ck.state_dict.items():
        if not key.startswith("head."):
            assert torch.equal(value, tuned.state_dict[key]), key
    assert not torch.equal(ck.state_dict["head.1.weight"], tuned.state_dict["head.1.weight"])


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_resume_equals_uninterrupted(npz_data, tmp_path, ema_decay):
    def config(out, **extra):
        cfg = tiny_config(npz_data, out, epochs=3, ema_decay=ema_decay, **extra)
        cfg["model"]["dropout"] = 0.2  # resume must restore the dropout RNG too
        return cfg

    full = train(config(tmp_path / "full"), progress=False)
    train(config(tmp_path / "cut", time_limit_minutes=1e-6), progress=False)
    assert len(json.loads((tmp_path / "cut" / "summary.json").read_text())["best"]) > 0
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = train(config(tmp_path / "cut"), resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)  # no pickled objects in the state
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert full["best"]["epoch"] == resumed["best"]["epoch"]
    if ema_decay is None:
        assert "ema" not in a
        return
    assert a["ema"]["updates"] == b["ema"]["updates"] > 0
    for key, value in a["ema"]["module"].items():
        assert torch.equal(value, b["ema"]["module"][key]), key


def test_the_weight_average_is_what_is_validated_and_saved(npz_data, tmp_path):
    train(tiny_config(npz_data, tmp_path / "run", epochs=1, ema_decay=0.9), progress=False)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    best = load_checkpoint(tmp_path / "run" / "best.pt").state_dict  # epoch 1 is the best so far
    assert all(torch.equal(best[key], value) for key, value in state["ema"]["module"].items())
    assert any(not torch.equal(best[key], value) for key, value in state["model"].items())


def test_weight_average_follows_the_weights_with_a_warm_up():
    from star_har.train.ema import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(net, decay=0.99)
    assert not any(p.requires_grad for p in average.module.parameters()) and not average.module.training
    start = average.module[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net[1].num_batches_tracked.fill_(7)
    average.update(net)  # first decay min(0.99, 1 / 10) = 0.1: the average moves 90 % of the way
    assert torch.allclose(average.module[0].weight, start + 0.9)
    assert average.module[1].num_batches_tracked.item() == 7  # integer buffers are copied
    for _ in range(2000):
        average.update(net)
    assert average.current_decay() == 0.99
    assert torch.allclose(average.module[0].weight, net[0].weight)
    restored = WeightAverage(net, decay=0.99)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == average.updates == 2001
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    train(cfg, progress=False)
    assert not torch.distributed.is_initialized()  # train started the group, train ends it


def test_ddp_two_processes_equal_one(npz_data, tmp_path):
    """gloo, 2 ranks x 4 samples == 1 process x 8 samples, step for step (dropout off)."""
    def config(out):
        cfg = tiny_config(npz_data, out, epochs=2, batch_size=8, grad_clip=None)
        cfg["model"]["dropout"] = 0.0
        cfg["data"]["eval_windows"] = 1
        # SGD: Adam would blow float rounding in exactly-zero gradients (key biases) up to lr-sized steps
        cfg["optim"] = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0}
        return cfg

    mp.spawn(_ddp_worker, args=(2, _free_port(), config(tmp_path / "ddp")), nprocs=2, join=True)
    train(config(tmp_path / "single"), progress=False)
    a = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5, msg=key)
    np.testing.assert_allclose([h["train_loss"] for h in a["history"]], [h["train_loss"] for h in b["history"]],
                               rtol=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["train", "--kind", "npz", "--data", "/nonexistent/folder"], "skeleton (.npz) folder not found"),
    (["train", "--config", "/nonexistent.yaml"], "config not found"),
    (["train", "--set", "optim.bogus=1"], "optim.bogus: unknown config key"),
    (["train", "--set", "data.window_second=1"], "data.window_second: unknown config key (did you mean window_seconds?)"),
    (["train", "--set", "model.dimm=64"], "model.dimm: unknown config key (did you mean dim?)"),
    (["train", "--set", "augment.flipp=0.2"], "augment.flipp: unknown config key (did you mean flip?)"),
    (["train", "--set", "augment.flip=1.5"], "augment.flip: Input should be less than or equal to 1"),
    (["train", "--set", "augment.lower_body_dropout=-0.1"],
     "augment.lower_body_dropout: Input should be greater than or equal to 0"),
    (["train", "--set", "augment.jitter=-0.01"], "augment.jitter: Input should be greater than or equal to 0"),
    (["train", "--set", "augment.speed=[0, 1.3]"], "augment.speed.0: Input should be greater than 0"),
    (["train", "--set", "model.num_classes=3"], "model.num_classes: unknown config key"),
    (["train", "--set", "optim.lr=fast"], "optim.lr: Input should be a valid number"),
    (["train", "--set", "data.frames_per_window=0"], "data.frames_per_window: Input should be greater than or equal to 1"),
    (["train", "--set", "model.name=nope"], "unknown model 'nope'"),
    (["train", "--epochs", "0"], "argument --epochs: must be at least 1"),
    (["train", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["eval", "--checkpoint", "x.pt", "--data", ".", "--windows", "0"], "argument --windows: must be at least 1"),
    (["eval", "--checkpoint", "x.pt", "--data", ".", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["eval", "--checkpoint", "/nonexistent.pt", "--data", "."], "checkpoint not found"),
])
def test_bad_inputs_give_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_config_file_problems_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    exported = tmp_path / "export.yaml"
    exported.write_text("export: assets/star_pose_penn.pt\n")
    for path, message in ((bad, "is not valid YAML at line 2"), (exported, "export: unknown config key")):
        assert main(["train", "--config", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err


def test_presets_are_valid_and_write_only_into_their_output(tmp_path):
    """A preset must not name files outside --output (it once overwrote the shipped checkpoint)."""
    from star_har.files import packaged_file

    presets = sorted(packaged_file("star_har.configs", "").glob("*.yaml"))
    assert presets
    for preset in presets:
        cfg = load_config(preset, [f"output={tmp_path}"])
        assert "export" not in cfg and cfg["output"] == str(tmp_path)


def test_resume_refuses_truncated_state_and_changed_config(npz_data, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_config(npz_data, out, epochs=1), progress=False)
    base = ["train", "--kind", "npz", "--data", str(npz_data), "--output", str(out), "--resume",
            "--set", "model.dim=32", "--set", "model.depth=1"]
    assert main(base + ["--set", "optim.lr=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "the config differs" in err and "optim.lr" in err and "\n" not in err
    state = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(state[: len(state) // 2])
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert "truncated" in err and "\n" not in err
    torch.save({"model": object()}, out / "last.pt")  # a pickled object is refused, never run
    assert main(base) == 2
    assert "is not a star-har training state" in capsys.readouterr().err


def test_init_from_a_checkpoint_that_fits_nothing_is_an_error(npz_data, tmp_path):
    from star_har.errors import InvalidInputError
    from star_har.model import TemporalSampling, build_model, save_checkpoint
    from star_har.model.checkpoint import atomic_torch_save

    net = build_model("star", 3, **{k: v for k, v in TINY.items() if k not in ("name", "layout")})
    save_checkpoint(tmp_path / "a.pt", net, model_name="star", class_names=["arms_up", "squat", "wave"],
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.0))
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    raw["state_dict"] = {f"other.{k}": v for k, v in raw["state_dict"].items()}  # names from another model
    atomic_torch_save(raw, tmp_path / "a.pt")
    with pytest.raises(InvalidInputError, match="none of its tensors fits"):
        train(tiny_config(npz_data, tmp_path / "ft", epochs=1, init=str(tmp_path / "a.pt")), progress=False)


def test_fine_tuning_leaves_the_old_models_importance_head_behind(npz_data, tmp_path):
    from star_har.model import TemporalSampling, build_model, load_checkpoint, save_checkpoint
    from star_har.train.engine import build_network

    settings = {k: v for k, v in TINY.items() if k not in ("name", "layout")}
    net = build_model("star", 3, importance_head=True, **settings)
    save_checkpoint(tmp_path / "fitted.pt", net, model_name="star", class_names=["arms_up", "squat", "wave"],
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.0))
    assert load_checkpoint(tmp_path / "fitted.pt").hparams["importance_head"]
    tuned, _, _ = build_network(tiny_config(npz_data, tmp_path / "ft", init=str(tmp_path / "fitted.pt")),
                                ["a", "b", "c", "d"])
    assert tuned.importance_head is None and not tuned.hparams.get("importance_head")
    kept = {k for k in tuned.state_dict() if not k.startswith("head.4.")}
    assert all((tuned.state_dict()[k] == net.state_dict()[k]).all() for k in kept)


def test_unknown_class_is_a_one_line_error(npz_data, tmp_path, capsys):
    assert main(["train", "--kind", "npz", "--data", str(npz_data), "--classes", "squat,fly",
                 "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fly" in err and "\n" not in err


def test_one_corrupt_file_does_not_abort_an_evaluation(tmp_path, caplog):
    from train_fixtures import write_penn_mat

    from star_har.model import TemporalSampling, build_model, save_checkpoint
    from star_har.train.evaluate import evaluate_checkpoint

    data = tmp_path / "penn"
    data.mkdir()
    for i in range(4):
        write_penn_mat(data / f"{i:04d}.mat", action="squat", num_frames=30, seed=i)
    (data / "0004.mat").write_bytes(b"MATLAB 5.0 MAT-file, cut short")
    net = build_model("star", 2, **{k: v for k, v in TINY.items() if k not in ("name", "layout")})
    save_checkpoint(tmp_path / "ck.pt", net, model_name="star", class_names=["squat", "wave"],
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.0))
    report = evaluate_checkpoint(tmp_path / "ck.pt", data, windows=1, output=tmp_path / "eval")
    assert report["sequences"] == 4
    assert "skipped 1 corrupt Penn Action files of 5" in caplog.text


def test_fine_tuning_into_another_joint_layout_carries_each_joints_weights(npz_data, tmp_path):
    from star_har.model import TemporalSampling, build_model, load_checkpoint, save_checkpoint
    from star_har.model.skeleton import get_layout
    from star_har.train.engine import build_network

    settings = {k: v for k, v in TINY.items() if k != "name"}
    net = build_model("star", 3, **settings)
    save_checkpoint(tmp_path / "penn.pt", net, model_name="star", class_names=["arms_up", "squat", "wave"],
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.0))
    cfg = tiny_config(npz_data, tmp_path / "ft", epochs=1, init=str(tmp_path / "penn.pt"))
    cfg["model"]["layout"] = "body16"
    tuned, layout, _ = build_network(cfg, ["a", "b"])
    assert layout == "body16" and tuned.hparams["num_joints"] == 16 and tuned.hparams["layout"] == "body16"
    old, new, body = net.joint_embed.detach(), tuned.joint_embed.detach(), get_layout("body16")
    penn = get_layout("penn13")
    for joint in penn.joint_names:  # every Penn joint keeps its row
        assert torch.equal(new[body.index(joint)], old[penn.index(joint)])
    assert torch.equal(new[body.index("nose")], old[penn.index("head")])
    assert torch.equal(new[body.index("left_hand")], old[penn.index("left_wrist")])
    kept = {k for k in tuned.state_dict() if k != "joint_embed" and not k.startswith("head.4.")}
    assert all(torch.equal(tuned.state_dict()[k], net.state_dict()[k]) for k in kept)
    # the data follow: Penn-layout sequences are converted to the new layout for training
    train(cfg, progress=False, export=tmp_path / "body16.pt")
    assert load_checkpoint(tmp_path / "body16.pt").joint_layout == "body16"


def test_a_pose_model_grows_an_rgb_stream_with_init_modality(npz_data, tmp_path):
    """init_modality rgb+pose: the transformer, kinematics and head start from the pose model; the
    CNN and what reads it (grid and joint-map projections, the third class token) are new."""
    from star_har.model import TemporalSampling, build_model, save_checkpoint
    from star_har.train.engine import build_network

    settings = {k: v for k, v in TINY.items() if k != "name"}
    net = build_model("star", 3, **settings)
    save_checkpoint(tmp_path / "pose.pt", net, model_name="star", class_names=["arms_up", "squat", "wave"],
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.0))
    cfg = tiny_config(npz_data, tmp_path / "ft", init=str(tmp_path / "pose.pt"), init_modality="rgb+pose")
    grown, _, _ = build_network(cfg, ["arms_up", "squat", "wave"])
    assert grown.hparams["modality"] == "rgb+pose" and grown.backbone is not None
    old, new = net.state_dict(), grown.state_dict()
    shared = {k for k in new if k in old and new[k].shape == old[k].shape}
    assert any(k.startswith("layers.") for k in shared) and all(torch.equal(new[k], old[k]) for k in shared)
    assert not any(k.startswith(("backbone.", "grid_proj.")) for k in shared)
    cfg.pop("init_modality")
    assert build_network(cfg, ["a"])[0].hparams["modality"] == "pose"  # without it the checkpoint's own


def test_mixed_precision_of_a_run():
    from star_har.train.engine import autocast_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype({"amp": True, "cpu_bf16": False}, cpu) is None  # amp is CUDA's fp16
    assert autocast_dtype({"amp": True, "cpu_bf16": True}, cpu) == torch.bfloat16
    assert autocast_dtype({"amp": True, "cpu_bf16": True}, cuda) == torch.float16
    assert autocast_dtype({"amp": False, "cpu_bf16": True}, cuda) is None


def test_a_bf16_run_on_cpu_trains_and_saves_fp32_weights(npz_data, tmp_path):
    from star_har.model import load_checkpoint

    summary = train(tiny_config(npz_data, tmp_path / "bf16", epochs=1, cpu_bf16=True), progress=False,
                    export=tmp_path / "bf16.pt")
    assert np.isfinite(summary["best"]["train_loss"])
    assert all(v.dtype == torch.float32 for v in load_checkpoint(tmp_path / "bf16.pt").state_dict.values()
               if v.is_floating_point())


def test_new_tensors_are_logged_by_module():
    from star_har.train.engine import summarize_names

    names = {f"backbone.stages.layer{i}.weight" for i in range(4)} | {"cls_tokens", "head.4.bias", "head.4.weight"}
    assert summarize_names(names) == "backbone (4 tensors), cls_tokens, head (2 tensors)"
    assert summarize_names(set()) == ""


SOUP = {"epochs": 1, "lr": 1e-3, "ema_decay": None,
        "branches": [{}, {"augment.lower_body_dropout": 0.5, "seed": 3}]}


def test_weight_soup_averages_the_branches_and_resumes(npz_data, tmp_path):
    from star_har.train.soup import average_weights

    out = tmp_path / "run"
    cfg = tiny_config(npz_data, out, epochs=2, soup=SOUP)
    summary = train(cfg, progress=False, export=tmp_path / "exported.pt")
    branches = [load_checkpoint(out / "soup" / f"branch{i}" / "best.pt") for i in (1, 2)]
    assert branches[1].meta["config"]["augment"]["lower_body_dropout"] == 0.5
    assert branches[1].meta["config"]["init"] == str(out / "best.pt") and branches[1].meta["config"]["seed"] == 3
    soup = load_checkpoint(out / "soup.pt")
    for key, value in soup.state_dict.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (branches[0].state_dict[key] + branches[1].state_dict[key]) / 2)
    assert not torch.equal(branches[0].state_dict["head.1.weight"], branches[1].state_dict["head.1.weight"])
    assert soup.meta["soup"]["branches"] == SOUP["branches"] and len(soup.meta["soup"]["ingredient_validation"]) == 2
    assert summary["checkpoint"] == str(out / "soup.pt") and 0 <= summary["best"]["val_window_top1"] <= 1
    times = [json.loads((out / p / "summary.json").read_text())["train_time_s"] for p in (".", "soup/branch1", "soup/branch2")]
    assert summary["train_time_s"] == pytest.approx(sum(times), abs=0.2)
    assert torch.equal(load_checkpoint(tmp_path / "exported.pt").state_dict["head.1.weight"], soup.state_dict["head.1.weight"])
    assert (out / "soup" / "confusion.png").is_file()

    # resuming a finished soup trains nothing again and cooks the same soup
    logs = [(out / p / "log.csv").read_text() for p in (".", "soup/branch1", "soup/branch2")]
    again = train(cfg, resume=True, progress=False)
    assert [(out / p / "log.csv").read_text() for p in (".", "soup/branch1", "soup/branch2")] == logs
    assert again["best"]["val_window_top1"] == summary["best"]["val_window_top1"]
    assert torch.equal(average_weights([b.state_dict for b in branches])["head.1.weight"],
                       load_checkpoint(out / "soup.pt").state_dict["head.1.weight"])

    # the same soup from the command line, validated on the split the branches recorded
    branch_paths = [str(out / "soup" / f"branch{i}" / "best.pt") for i in (1, 2)]
    assert main(["soup", *branch_paths, "--output", str(tmp_path / "cli_soup.pt"), "--no-progress"]) == 0
    cli_soup = load_checkpoint(tmp_path / "cli_soup.pt")
    assert torch.equal(cli_soup.state_dict["head.1.weight"], soup.state_dict["head.1.weight"])
    assert cli_soup.meta["validation"]["val_window_top1"] == summary["best"]["val_window_top1"]
    assert cli_soup.meta["soup"]["ingredients"] == branch_paths


def test_a_soup_is_added_to_a_finished_run_by_resume(npz_data, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(npz_data, out, epochs=1), progress=False)
    main_log = (out / "log.csv").read_text()
    train(tiny_config(npz_data, out, epochs=1, soup=SOUP), resume=True, progress=False)
    assert (out / "log.csv").read_text() == main_log and (out / "soup.pt").is_file()


def test_soup_branches_past_the_time_limit_are_left_out(npz_data, tmp_path):
    out = tmp_path / "run"
    summary = train(tiny_config(npz_data, out, epochs=3, soup=SOUP, time_limit_minutes=1e-6), progress=False,
                    export=tmp_path / "exported.pt")
    assert summary["epochs"] == 1 and not (out / "soup").exists() and not (out / "soup.pt").exists()
    assert torch.equal(load_checkpoint(tmp_path / "exported.pt").state_dict["head.1.weight"],
                       load_checkpoint(out / "best.pt").state_dict["head.1.weight"])


def test_a_calibrated_checkpoint_soups_with_its_fine_tune(npz_data, tmp_path):
    """A shipped model is calibrated (novelty head, open-set meta) and older ones lack the mirror
    table: neither is part of the trained network, so the soup averages the rest and is uncalibrated."""
    from star_har.train.openset import calibrate_checkpoint

    cfg = tiny_config(npz_data, tmp_path / "a", epochs=1)
    train(cfg, progress=False)
    calibrated = tmp_path / "a" / "best.pt"
    calibrate_checkpoint(calibrated, cfg["data"], progress=False)
    train(tiny_config(npz_data, tmp_path / "b", epochs=1, init=str(calibrated)), progress=False)
    ingredients = [load_checkpoint(calibrated), load_checkpoint(tmp_path / "b" / "best.pt")]
    assert ingredients[0].hparams["novelty_head"] and not ingredients[1].hparams["novelty_head"]
    older = tmp_path / "older.pt"  # the calibrated model as a checkpoint from before the mirror table
    hparams = {k: v for k, v in ingredients[0].hparams.items() if k != "mirror_classes"}
    raw = torch.load(calibrated, weights_only=True)
    torch.save({**raw, "model": {**raw["model"], "hparams": hparams}}, older)
    assert "mirror_classes" not in load_checkpoint(older).hparams

    assert main(["soup", str(older), str(tmp_path / "b" / "best.pt"), "--output", str(tmp_path / "s.pt"),
                 "--no-progress"]) == 0
    soup = load_checkpoint(tmp_path / "s.pt")
    assert not soup.hparams["novelty_head"] and "open_set" not in soup.meta
    assert soup.hparams["mirror_classes"] == ingredients[1].hparams["mirror_classes"]
    assert not any(k.startswith("novelty_head.") for k in soup.state_dict)
    for key, value in soup.state_dict.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (ingredients[0].state_dict[key] + ingredients[1].state_dict[key]) / 2)
    soup.build()


def test_soup_command_refuses_networks_that_differ(npz_data, tmp_path, capsys):
    train(tiny_config(npz_data, tmp_path / "a", epochs=1), progress=False)
    cfg = tiny_config(npz_data, tmp_path / "b", epochs=1)
    cfg["data"]["classes"] = ["wave", "arms_up"]
    train(cfg, progress=False)
    paths = [str(tmp_path / "a" / "best.pt"), str(tmp_path / "b" / "best.pt")]
    assert main(["soup", *paths, "--output", str(tmp_path / "s.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot average" in err and "\n" not in err and not (tmp_path / "s.pt").exists()
    assert main(["soup", paths[0], "--output", str(tmp_path / "s.pt")]) == 2
    assert "at least two" in capsys.readouterr().err


def test_a_bad_soup_branch_fails_before_training(npz_data, tmp_path):
    from star_har.errors import InvalidInputError

    soup = {**SOUP, "branches": [{}, {"augment.lower_body_dropot": 0.5}]}
    with pytest.raises(InvalidInputError, match="soup branch 2: .*lower_body_dropot"):
        train(tiny_config(npz_data, tmp_path / "run", soup=soup), progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(InvalidInputError, match="soup"):
        train(tiny_config(npz_data, tmp_path / "run", soup={**SOUP, "branches": [{}]}), progress=False)


def test_average_weights():
    from star_har.train.soup import average_weights

    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.float16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([2.0], dtype=torch.float16), "n": torch.tensor(5)}
    soup = average_weights([a, b])
    assert torch.equal(soup["w"], torch.tensor([2.0, 4.0])) and soup["h"].dtype == torch.float16
    assert soup["h"].item() == 1.5 and soup["n"].item() == 3
    with pytest.raises(ValueError, match="differ"):
        average_weights([a, {**b, "w": torch.zeros(3)}])


def test_a_pose_model_learns_depth_from_its_checkpoint_with_joint_depth(npz_data, tmp_path, caplog):
    """``model.joint_depth: true`` with init: the kinematics embedding grows zero depth columns (the
    log names them), training feeds four channels (zeros for sequences without depth) and the
    checkpoint records that its inputs carry depth; a model that cannot take depth is refused."""
    import logging

    from star_har.model import TemporalSampling, build_model, save_checkpoint
    from star_har.train.engine import build_network

    settings = {k: v for k, v in TINY.items() if k != "name"} | {"joint_features": ["field", "kinematics"]}
    net = build_model("star", 3, num_joints=13, **settings)
    save_checkpoint(tmp_path / "plain.pt", net, model_name="star", class_names=["arms_up", "squat", "wave"],
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.0))
    cfg = tiny_config(npz_data, tmp_path / "deep", init=str(tmp_path / "plain.pt"), epochs=1)
    cfg["model"]["joint_depth"] = True
    with caplog.at_level(logging.INFO, logger="star_har.train.engine"):
        deep, _, _ = build_network(cfg, ["arms_up", "squat", "wave"])
    assert "new zero input columns: kinematics_embed.0.weight" in caplog.text
    old = net.state_dict()["kinematics_embed.0.weight"]
    new = deep.state_dict()["kinematics_embed.0.weight"]
    assert torch.equal(new[:, :7], old) and torch.all(new[:, 7:] == 0)
    train(cfg, progress=False)
    ck = load_checkpoint(tmp_path / "deep" / "best.pt")
    assert ck.joint_depth and ck.keypoint_channels == 4
    deformable = build_model("deformable", 3, num_joints=13, dim=32, depth=1, num_heads=2)
    save_checkpoint(tmp_path / "def.pt", deformable, model_name="deformable", class_names=["arms_up", "squat", "wave"],
                    joint_layout="penn13", sampling=TemporalSampling(16, 1.0))
    cfg["init"] = str(tmp_path / "def.pt")
    with pytest.raises(ValueError, match="cannot take joint depth"):
        build_network(cfg, ["arms_up", "squat", "wave"])
