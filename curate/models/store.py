"""Model directories: ``model.safetensors`` + ``config.json`` (never pickle), and TorchScript files.

A model directory is an input like any other: ``config.json`` may have been edited and the
weights may be truncated, so both are validated here and every defect is one InputError naming
the file and the key. Loading a TorchScript file runs code stored inside it, so it happens only
when the caller says it trusts the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from curate.errors import InputError
from curate.io.provenance import file_sha256
from curate.models.heads import ARCHITECTURES, HeadSpec, build_head

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRUST_FLAG = "--trust-torchscript"


def _ordinary_permissions(path: Path) -> None:
    # safetensors writes its file 0600; a model directory is shared like config.json (0644 under umask 022).
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def save_head(directory: Path, head: nn.Sequential, config: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().float() for k, v in head.state_dict().items()}
    save_file(state, str(directory / WEIGHTS), metadata={"format": "pt"})
    _ordinary_permissions(directory / WEIGHTS)
    (directory / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True, default=str))


def read_config(directory: Path) -> dict[str, Any]:
    """``config.json`` as a dict; InputError when it is missing, not JSON, or not an object."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise InputError(f"{directory}: not a curate model directory (no {CONFIG}); train one with `curate il train`")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(config).__name__}; re-create it with `curate il train`")
    return config


def _bad(path: Path, key: str, what: str) -> InputError:
    return InputError(f"{path}: key {key!r} {what}; re-create the model with `curate il train`")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def head_spec(config: dict[str, Any], path: Path) -> HeadSpec:
    """The validated ``architecture`` of a head's config (``path`` names the file in errors)."""
    arch = config.get("architecture")
    if not isinstance(arch, dict):
        raise _bad(path, "architecture", "is missing or not an object")
    if arch.get("arch") not in ARCHITECTURES:
        raise _bad(path, "architecture.arch", f"must be one of {', '.join(ARCHITECTURES)} (found {arch.get('arch')!r})")
    for key in ("in_dim", "n_classes"):
        if not _int(arch.get(key)) or arch[key] < 1:
            raise _bad(path, f"architecture.{key}", f"must be a positive integer (found {arch.get(key)!r})")
    hidden = arch.get("hidden", [])
    if not isinstance(hidden, list) or not all(_int(h) and h >= 1 for h in hidden):
        raise _bad(path, "architecture.hidden", f"must be a list of positive integers (found {hidden!r})")
    dropout = arch.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise _bad(path, "architecture.dropout", f"must be a number in [0, 1) (found {dropout!r})")
    return HeadSpec.from_dict(arch)


def check_labels(config: dict[str, Any], path: Path, n_classes: int | None) -> list[Any]:
    labels = config.get("labels")
    if not isinstance(labels, list) or not labels:
        raise _bad(path, "labels", "must be a non-empty JSON list (the class of each logit, in order)")
    if len({json.dumps(v, sort_keys=True) for v in labels}) != len(labels):
        raise _bad(path, "labels", "lists a class twice")
    if n_classes is not None and len(labels) != n_classes:
        raise _bad(path, "labels", f"lists {len(labels)} classes but architecture.n_classes is {n_classes}")
    return labels


def load_head(directory: Path) -> tuple[nn.Sequential, dict[str, Any]]:
    """The head of a model directory (eval mode) and its validated config."""
    directory = Path(directory)
    config = read_config(directory)
    cfg_path = directory / CONFIG
    spec = head_spec(config, cfg_path)
    check_labels(config, cfg_path, spec.n_classes)
    weights = directory / WEIGHTS
    if not weights.is_file():
        raise InputError(f"{weights}: missing; a model directory holds {WEIGHTS} next to {CONFIG}")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise InputError(f"{weights}: not a readable safetensors file ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    head = build_head(spec)
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        if "0.weight" in found and len(found["0.weight"]) == 2 and found["0.weight"][1] != spec.in_dim:
            raise _bad(cfg_path, "architecture.in_dim", f"is {spec.in_dim} but {WEIGHTS} takes {found['0.weight'][1]} inputs")
        raise InputError(f"{weights}: tensors {sorted(found.items())} do not match the architecture in {cfg_path} "
                         f"({sorted(expected.items())}); re-create the model with `curate il train`")
    head.load_state_dict(state)
    return head.eval(), config


def file_kind(path: Path) -> str:
    """``parquet``, ``torchscript`` (a zip archive, as ``torch.jit.save`` writes) or ``unknown``, from magic bytes."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PAR1":
        return "parquet"
    if head[:2] == b"PK":
        return "torchscript"
    return "unknown"


def load_torchscript(path: Path, trust: bool = False) -> nn.Module:
    """Load a TorchScript module (eval mode). Refused unless ``trust``: loading runs code stored in the file."""
    if not trust:
        raise InputError(f"{path}: is a TorchScript file, and loading it would execute code inside the file; "
                         f"pass {TRUST_FLAG} only if you trust where it came from")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise InputError(f"{path}: not a loadable TorchScript module ({type(e).__name__})") from None
