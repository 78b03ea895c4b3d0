"""``star-har info``: versions, devices and the inference engines usable on this machine."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def collect_info() -> dict[str, object]:
    import torch

    from star_har.model import list_models

    cuda = torch.cuda.is_available()
    info: dict[str, object] = {
        "star-har": _version("star-har"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if cuda else "not available",
        "cpu threads": torch.get_num_threads(),
        "models": ", ".join(list_models()),
    }
    for package in ("torchvision", "onnxruntime", "tensorrt", "mediapipe", "opencv-contrib-python", "PyQt6"):
        info[package] = _version(package)
    try:
        import onnxruntime
        info["onnxruntime providers"] = ", ".join(onnxruntime.get_available_providers())
    except ImportError:
        pass
    return info


def run_info(args: argparse.Namespace) -> int:
    info = collect_info()
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key:<{width}}  {value}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="show versions, devices, models and engines",
                                   description="Show library versions, the compute device, the "
                                               "registered models and the available inference engines.")
    parser.set_defaults(handler=run_info)
