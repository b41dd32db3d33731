"""Model directories: ``model.safetensors`` + ``config.json`` (never pickle), and TorchScript files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from curate.errors import InputError
from curate.io.provenance import file_sha256
from curate.models.heads import HeadSpec, build_head

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def save_head(directory: Path, head: nn.Sequential, config: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().float() for k, v in head.state_dict().items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
    (directory / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True, default=str))


def read_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG
    if not path.exists():
        raise InputError(f"{directory}: not a curate model directory (no {CONFIG}); train one with `curate il train`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def load_head(directory: Path) -> tuple[nn.Sequential, dict[str, Any]]:
    config = read_config(directory)
    head = build_head(HeadSpec.from_dict(config["architecture"]))
    try:
        head.load_state_dict(load_file(str(Path(directory) / WEIGHTS)))
    except Exception as e:
        raise InputError(f"{directory}/{WEIGHTS}: cannot load weights ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return head.eval(), config


def weights_hash(directory: Path) -> str:
    return file_sha256(Path(directory) / WEIGHTS)


def load_torchscript(path: Path) -> nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise InputError(f"{path}: not a loadable TorchScript module ({type(e).__name__})") from None
