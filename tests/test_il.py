"""IL models as inputs: no code runs from a file unless trusted, permissions, threads/device, progress."""

from __future__ import annotations

import io
import re
import json
import os

import pytest
import torch
from rich.console import Console

from conftest import assert_fails, run, snapshot
from score_helpers import clusters, write_pool

from curate.errors import InputError
from curate.il import ILModel, info
from curate.models.store import load_head


@pytest.fixture(scope="module")
def il_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("il")
    X, y = clusters(90, d=8, classes=3, seed=4)
    hold = write_pool(d / "hold.parquet", X, y)
    r = run("il", "train", hold, "-o", d / "il", "--epochs", 6, "--hidden", 8, "--threads", 1, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    return d, hold, d / "il"


class _WritesAFile(torch.nn.Module):
    """A module whose forward has a side effect: what a hostile TorchScript file can do."""

    def __init__(self, target: str):
        super().__init__()
        self.target = target
        self.lin = torch.nn.Linear(8, 3)

    def forward(self, x):
        torch.save(torch.zeros(1), self.target)
        return self.lin(x)


def _hostile(tmp_path):
    target = tmp_path / "pwned"
    ts = tmp_path / "model.pt"
    torch.jit.script(_WritesAFile(str(target))).save(str(ts))
    (tmp_path / "labels.json").write_text(json.dumps(["c0", "c1", "c2"]))
    return ts, target


def test_torchscript_is_refused_without_the_flag_and_runs_nothing(tmp_path, il_dir):
    d, hold, _ = il_dir
    ts, target = _hostile(tmp_path)
    with pytest.raises(InputError, match="execute code inside the file.*--trust-torchscript"):
        ILModel(ts)
    before = snapshot(tmp_path)
    assert_fails(["train", hold, "--il", ts, "--big-batch", 10, "-o", tmp_path / "run"],
                 "--trust-torchscript", "execute code", out=tmp_path / "run")
    assert not target.exists() and snapshot(tmp_path) == before
    # info without the flag reads only what needs no loading.
    r = run("il", "info", ts, "--json")
    assert r.exit_code == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["loaded"] is False and got["labels"] == ["c0", "c1", "c2"] and got["size"] == ts.stat().st_size
    import hashlib

    assert got["sha256"] == hashlib.sha256(ts.read_bytes()).hexdigest()
    assert not target.exists()
    # With the flag the user opted in: the module is loaded and its code runs when called.
    model = ILModel(ts, trust_torchscript=True)
    model.check_dimension(8, "test")
    assert target.exists()


def test_trusted_torchscript_equals_the_directory_model(tmp_path, il_dir):
    d, hold, il = il_dir
    head, cfg = load_head(il)
    ts = tmp_path / "m.pt"
    torch.jit.script(head).save(str(ts))
    (tmp_path / "labels.json").write_text(json.dumps(cfg["labels"]))
    X, y = clusters(90, d=8, classes=3, seed=4)
    labels = [f"c{v}" for v in y]
    ids = [f"ex-{i:05d}" for i in range(90)]
    a = ILModel(il).losses(ids, labels, X, "t")
    b = ILModel(ts, trust_torchscript=True).losses(ids, labels, X, "t")
    assert a.tolist() == pytest.approx(b.tolist(), abs=1e-6)
    assert info(ts, trust_torchscript=True)["kind"] == "torchscript"


def test_weights_and_config_get_ordinary_permissions(tmp_path):
    X, y = clusters(60, d=4, classes=2)
    hold = write_pool(tmp_path / "h.parquet", X, y)
    mask = os.umask(0o022)
    try:
        assert run("il", "train", hold, "-o", tmp_path / "il", "--epochs", 2, "--hidden", 4).exit_code == 0
    finally:
        os.umask(mask)
    assert (tmp_path / "il" / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "il" / "config.json").stat().st_mode & 0o777 == 0o644


def test_threads_and_device_are_recorded_and_restored(il_dir):
    d, hold, il = il_dir
    cfg = json.loads((il / "config.json").read_text())
    assert cfg["runtime"]["device"] == "cpu" and cfg["runtime"]["threads"] == 1
    before = torch.get_num_threads()
    assert run("il", "train", hold, "-o", d / "il-t", "--epochs", 1, "--hidden", 4, "--threads", 1).exit_code == 0
    assert torch.get_num_threads() == before


def test_thread_count_does_not_change_the_model(il_dir):
    d, hold, il = il_dir
    assert run("il", "train", hold, "-o", d / "il-2", "--epochs", 6, "--hidden", 8, "--device", "cpu", "--threads", 2).exit_code == 0
    assert (d / "il-2" / "model.safetensors").read_bytes() == (il / "model.safetensors").read_bytes()


def test_progress_shows_the_final_state_on_early_stop(il_dir, monkeypatch):
    from curate import progress

    d, hold, _ = il_dir
    buf = io.StringIO()
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(progress, "stderr", Console(file=buf, force_terminal=True, width=200, color_system=None))
    # lr 5 makes validation loss rise at once; patience 1 stops after epoch 2 of 50.
    r = run("il", "train", hold, "-o", d / "il-early", "--epochs", 50, "--patience", 1, "--lr", 5, "--hidden", 8)
    assert r.exit_code == 0, r.stderr
    cfg = json.loads((d / "il-early" / "config.json").read_text())
    ran = len(cfg["curve"]) - 1
    assert ran < 50
    final = [line for line in re.split(r"[\r\n]", buf.getvalue()) if "il train" in line][-1]  # the last render
    assert f"stopped early at epoch {ran}" in final and f"{ran}/{ran}" in final and "100%" in final
