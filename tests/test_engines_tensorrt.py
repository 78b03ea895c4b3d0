"""The TensorRT engine's logic that does not need TensorRT: optimisation profiles, the engine cache
and its invalidation, and the builder calls, checked against a fake ``tensorrt`` module."""

from __future__ import annotations

import json
import types

import pytest

from star_har.cli import main
from star_har.realtime.engines import EngineUnavailable, ModelSpec
from star_har.realtime.engines import tensorrt_engine as trt_engine
from tests.realtime_helpers import tiny_checkpoint

GPU = {"gpu_name": "NVIDIA H100", "compute_capability": "9.0"}


def spec(needs_frames: bool) -> ModelSpec:
    return ModelSpec("star", ("a", "b"), 13, 16, (112, 112) if needs_frames else None, "penn13", 1.6)


def fake_tensorrt(version: str = "10.3.0", parse_ok: bool = True, build_ok: bool = True) -> types.ModuleType:
    """A stand-in for ``tensorrt`` recording what the builder was asked to do in ``trt.calls``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []

    class Logger:
        WARNING = "warning"

        def __init__(self, level):
            trt.calls.append(("logger", level))

    class Profile:
        def set_shape(self, name, smallest, optimal, largest):
            trt.calls.append(("set_shape", name, smallest, optimal, largest))

    class Config:
        def set_flag(self, flag):
            trt.calls.append(("set_flag", flag))

        def add_optimization_profile(self, profile):
            trt.calls.append(("add_optimization_profile",))

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            trt.calls.append(("builder",))

        def create_network(self, flags):
            trt.calls.append(("create_network", flags))
            return "network"

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.calls.append(("build", network))
            return bytearray(b"engine-" + version.encode()) if build_ok else None

    class OnnxParser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            assert network == "network"

        def parse_from_file(self, path):
            trt.calls.append(("parse", path))
            return parse_ok

        def get_error(self, index):
            return "unsupported operator GridSample3D"

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16")
    return trt


def calls(trt, kind):
    return [call for call in trt.calls if call[0] == kind]


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"onnx graph v1")
    return path


def test_profile_shapes_cover_batch_at_the_window_length():
    profile = trt_engine.profile_shapes(spec(True), max_batch=8)
    assert profile == {"frames": ((1, 3, 16, 112, 112), (1, 3, 16, 112, 112), (8, 3, 16, 112, 112)),
                       "keypoints": ((1, 16, 13, 3), (1, 16, 13, 3), (8, 16, 13, 3))}
    assert list(trt_engine.profile_shapes(spec(False), 4, opt_batch=2)) == ["keypoints"]
    assert trt_engine.profile_shapes(spec(False), 4, opt_batch=2)["keypoints"][1] == (2, 16, 13, 3)
    with pytest.raises(ValueError):
        trt_engine.profile_shapes(spec(False), 2, opt_batch=4)
    deep = ModelSpec(**{**spec(False).__dict__, "keypoint_channels": 4})  # a model with joint depth
    assert trt_engine.profile_shapes(deep, 4)["keypoints"] == ((1, 16, 13, 4), (1, 16, 13, 4), (4, 16, 13, 4))


@pytest.mark.parametrize("fp16", [False, True])
def test_builder_calls(onnx_file, fp16):
    trt = fake_tensorrt()
    profile = trt_engine.profile_shapes(spec(True), 4)
    blob = trt_engine.build_serialized_engine(trt, onnx_file, fp16, profile)
    assert blob == b"engine-10.3.0"
    assert calls(trt, "create_network") == [("create_network", 0)]
    assert calls(trt, "parse") == [("parse", str(onnx_file))]
    assert calls(trt, "set_flag") == ([("set_flag", "FP16")] if fp16 else [])
    assert calls(trt, "set_shape") == [("set_shape", name, *shapes) for name, shapes in profile.items()]
    assert len(calls(trt, "add_optimization_profile")) == 1


def test_parse_and_build_failures_are_reported(onnx_file):
    profile = trt_engine.profile_shapes(spec(False), 1)
    with pytest.raises(RuntimeError, match="cannot parse .*GridSample3D"):
        trt_engine.build_serialized_engine(fake_tensorrt(parse_ok=False), onnx_file, False, profile)
    with pytest.raises(RuntimeError, match="failed to build"):
        trt_engine.build_serialized_engine(fake_tensorrt(build_ok=False), onnx_file, False, profile)


def test_engine_cache_is_reused_and_rebuilt_on_mismatch(onnx_file, tmp_path):
    cache = tmp_path / "cache"
    model = spec(False)

    def load(trt, gpu=GPU, fp16=False, max_batch=8):
        return trt_engine.load_or_build_engine(trt, onnx_file, model, cache, fp16, max_batch, gpu)

    trt = fake_tensorrt("10.3.0")
    assert load(trt) == b"engine-10.3.0" and len(calls(trt, "build")) == 1
    (record_path,) = cache.glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["onnx_sha256"] == trt_engine.file_sha256(onnx_file)
    assert (record["gpu_name"], record["compute_capability"], record["tensorrt_version"], record["precision"]) \
        == ("NVIDIA H100", "9.0", "10.3.0", "fp32")

    assert load(trt) == b"engine-10.3.0" and len(calls(trt, "build")) == 1  # cache hit: no build

    upgraded = fake_tensorrt("10.4.0")  # another TensorRT version
    assert load(upgraded) == b"engine-10.4.0" and len(calls(upgraded, "build")) == 1
    other_gpu = fake_tensorrt("10.4.0")
    load(other_gpu, gpu={"gpu_name": "NVIDIA L4", "compute_capability": "8.9"})
    assert len(calls(other_gpu, "build")) == 1
    bigger = fake_tensorrt("10.4.0")
    load(bigger, gpu={"gpu_name": "NVIDIA L4", "compute_capability": "8.9"}, max_batch=16)
    assert len(calls(bigger, "build")) == 1  # another profile

    onnx_file.write_bytes(b"onnx graph v2")  # new weights: a new graph, its own cache slot
    retrained = fake_tensorrt("10.4.0")
    load(retrained, gpu={"gpu_name": "NVIDIA L4", "compute_capability": "8.9"}, max_batch=16)
    assert len(calls(retrained, "build")) == 1
    assert len(list(cache.glob("*.engine"))) == 2

    half = fake_tensorrt("10.4.0")  # fp16 and fp32 engines are cached side by side
    load(half, fp16=True)
    assert calls(half, "set_flag") == [("set_flag", "FP16")]
    assert len(list(cache.glob("*.engine"))) == 3


def test_cache_key_fields():
    profile = trt_engine.profile_shapes(spec(False), 8)
    record = trt_engine.engine_record("ab" * 32, GPU, "10.3.0", True, profile)
    engine_path, record_path = trt_engine.engine_cache_paths("/c", record)
    assert engine_path.name == "abababababababababab-fp16.engine" and record_path.suffix == ".json"
    assert json.loads(json.dumps(record)) == record  # what is compared is what is stored


def test_missing_tensorrt(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    with pytest.raises(EngineUnavailable, match="TensorRT is not installed.*star-har\\[tensorrt\\]"):
        trt_engine.import_tensorrt()
    checkpoint = tiny_checkpoint(tmp_path / "pose.pt", "pose")
    args = ["export", "--checkpoint", str(checkpoint), "--format", "tensorrt", "--output", str(tmp_path / "m.engine")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("star-har export: error: TensorRT is not installed") and "\n" not in err
    assert not (tmp_path / "m.engine").exists()


def test_engine_needs_a_gpu(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(EngineUnavailable, match="needs a CUDA GPU"):
        trt_engine.gpu_identity()
