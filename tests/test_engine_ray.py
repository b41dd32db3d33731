"""`--engine ray`: the same bytes as the local engine, on one and on two Ray nodes; faults and Ctrl-C.

Every cluster here lives on loopback: the in-process one is started by a module fixture with
Ray's single-machine mode (127.0.0.1); the two-node one binds both nodes to 127.0.0.2. Bad
values of the engine options are checked without Ray.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import assert_fails, run
from curate.embed import EmbedConfig, embed
from curate.embed.shard import run_shard
from curate.runtime import Runtime
from embed_helpers import write_jsonl
from score_helpers import clusters, write_pool

REPO = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (extra curate[ray])")
# Ray's own processes: no usage report, no token file in $HOME, quiet (loopback only, see above).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
TEXT = EmbedConfig(text_column="text", label_column="label", id_column="id", shard_size=3, batch_size=2, threads=1)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (2 CPUs, 127.0.0.1, no dashboard) for this module's in-process tests, shut down after them."""
    before = dict(os.environ)
    term = signal.getsignal(signal.SIGTERM)
    # Read when ray is first imported: single-machine mode binds every Ray process to 127.0.0.1.
    os.environ.update(RAY_ENV, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    import ray
    from ray import cloudpickle  # Ray pickles with its own copy

    # The fault-injecting task functions below are defined here, not in curate: ship them by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    signal.signal(signal.SIGTERM, term)
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    os.environ.clear()
    os.environ.update(before)
    signal.signal(signal.SIGTERM, term)


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("ray") / "t.jsonl")


@pytest.fixture(scope="module")
def local_bytes(jsonl, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.parquet"
    embed(jsonl, out, TEXT, runtime=Runtime(threads=1))
    return out.read_bytes()


def ray_runtime(**kw) -> Runtime:
    return Runtime(threads=1, engine="ray", workers=2, **kw)


@needs_ray
def test_score_on_ray_gives_the_bytes_of_the_local_engine(ray_local, tmp_path):
    X, y = clusters(200, d=8, classes=3, seed=3, spread=1.5)
    pool = write_pool(tmp_path / "pool.parquet", X, y)
    args = [pool, "-m", "el2n", "-m", "grand", "-K", "3", "-t", "2", "--hidden", "8", "--chunk", "48", "--threads", "1"]
    r = run("score", *args, "-o", tmp_path / "local.parquet")
    assert r.exit_code == 0, r.stderr
    r = run("score", *args, "--engine", "ray", "--workers", "2", "--cpus-per-worker", "0.25", "-o", tmp_path / "ray.parquet")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "local.parquet").read_bytes()
    assert r.stderr == ""  # Ray's own logging stays off the user's terminal


@needs_ray
def test_shared_task_values_go_to_the_object_store_once(ray_local):
    from curate.engine.ray import RayExecutor, _Sharer
    from curate.scores.snapshot import RowTask

    state = {"w": np.ones(10_000), "b": np.ones(3)}  # 80 KB: worth one put
    tasks = [RowTask({}, (1,), state, None, np.full((2, 1), i, np.float32), np.zeros(2, np.int64)) for i in range(3)]
    sharer = _Sharer(ray_local)
    first, second, third = (sharer.split(t) for t in tasks)
    assert first[0] is tasks[0] and first[1] == {}  # one task: nothing to share yet
    assert set(second[1]) == {"state"} and second[0].state is None and second[1]["state"] is third[1]["state"]
    # And the actors put the value back: each task sees its own rows and the shared state.
    got = list(RayExecutor(2).map(_echo, tasks))
    assert got == [(float(i), 10_003.0) for i in range(3)]


def _echo(task):
    return float(task.X[0, 0]), float(task.state["w"].sum() + task.state["b"].sum())


def _kill_mid_shard(marker: str, task):
    """Shard 1 kills its worker process after its first batch, once (``marker`` remembers)."""
    def on_batch(n):
        if task.index == 1 and not os.path.exists(marker):
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    return run_shard(task, on_batch=on_batch)


def _executor_with(fn_wrapper, **kw):
    from curate.engine.ray import RayExecutor

    class Wrapped(RayExecutor):
        def map(self, fn, tasks):
            return super().map(fn_wrapper, tasks)

    return Wrapped(2, **kw)


@needs_ray
def test_a_worker_killed_mid_shard_is_retried_without_duplicates(ray_local, jsonl, local_bytes, tmp_path):
    marker = tmp_path / "killed"
    out = tmp_path / "ray.parquet"
    ex = _executor_with(functools.partial(_kill_mid_shard, str(marker)), cpus_per_worker=0.5)
    embed(jsonl, out, replace(TEXT, engine="ray", workers=2), executor=ex)
    assert marker.exists()  # the worker was really killed in the middle of shard 1
    ids = pq.read_table(out).column("id").to_pylist()
    assert ids == [f"doc-{i:03d}" for i in range(14)]  # none lost, none twice, in order
    assert out.read_bytes() == local_bytes


@needs_ray
def test_interrupted_driver_frees_its_workers_and_the_rerun_resumes_to_the_local_bytes(ray_local, jsonl, local_bytes, tmp_path):
    from curate.engine.ray import RayExecutor

    class InterruptAfter(RayExecutor):
        def map(self, fn, tasks):
            for i, result in enumerate(super().map(fn, tasks)):
                if i == 2:
                    raise KeyboardInterrupt
                yield result

    out = tmp_path / "ray.parquet"
    with pytest.raises(KeyboardInterrupt):
        embed(jsonl, out, TEXT, executor=InterruptAfter(2, cpus_per_worker=0.5))
    assert not out.exists()
    # Its actors were killed: their CPUs are free again (Ray returns them asynchronously).
    deadline = time.monotonic() + 30
    while ray_local.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_local.available_resources().get("CPU", 0) == 2
    summary = embed(jsonl, out, TEXT, runtime=ray_runtime(cpus_per_worker=0.5))
    assert summary["resumed_shards"] == 2 and summary["shards"] == 5 and summary["rows"] == 14
    assert out.read_bytes() == local_bytes


@needs_ray
def test_a_task_s_bad_input_is_one_line_as_with_the_local_engine(ray_local, tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text('{"text": "fine"}\n{"text": ""}\n')
    assert_fails(["embed", src, "--text-column", "text", "--engine", "ray", "--workers", "2", "-o", tmp_path / "o.parquet"],
                 "t.jsonl: row 1", "empty", out=tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet.parts").exists()


def _curate(args, env=None, **kw) -> subprocess.Popen:
    env = {**os.environ, **RAY_ENV, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "curate", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _ray_start(args, log: Path) -> subprocess.Popen:
    ray_cli = Path(sys.executable).with_name("ray")
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # multi-node needs Ray's cluster mode
    return subprocess.Popen([str(ray_cli), "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.2",
                             "--num-cpus=1", *args], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _wait_for(log: Path, pattern: str, proc: subprocess.Popen, seconds: float = 120) -> re.Match:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        m = re.search(pattern, log.read_text())
        if m:
            return m
        assert proc.poll() is None, log.read_text()
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {log}: {log.read_text()[-2000:]}")


@needs_ray
@pytest.mark.slow
def test_two_nodes_on_loopback_embed_the_same_rows_as_one_machine(jsonl, local_bytes, tmp_path):
    short = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))  # Ray's socket paths must stay short
    nodes: list[subprocess.Popen] = []
    try:
        head = _ray_start(["--head", "--port=0", "--include-dashboard=false", f"--temp-dir={short}"], tmp_path / "head.log")
        nodes.append(head)
        address = _wait_for(tmp_path / "head.log", r"ray start --address='([^']+)'", head).group(1)
        worker = _ray_start([f"--address={address}"], tmp_path / "worker.log")
        nodes.append(worker)
        _wait_for(tmp_path / "worker.log", r"block forever", worker)
        out = tmp_path / "two.parquet"
        # One CPU per node and one whole CPU per worker: the two actors must run on different nodes.
        p = _curate(["embed", jsonl, "--text-column", "text", "--label-column", "label", "--id-column", "id",
                     "--shard-size", "3", "--batch-size", "2", "--threads", "1", "--engine", "ray",
                     "--ray-address", address, "--workers", "2", "--cpus-per-worker", "1", "-o", out, "--json"])
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        local = tmp_path / "local.parquet"
        local.write_bytes(local_bytes)
        # Same rows, order and vectors; the footer differs only by the command line it records.
        assert pq.read_table(out).equals(pq.read_table(local))
    finally:
        for proc in reversed(nodes):
            proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
        for proc in reversed(nodes):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(short, ignore_errors=True)


def _processes_under(path: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if path.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@needs_ray
@pytest.mark.slow
def test_sigterm_stops_the_run_and_the_private_cluster_it_started(jsonl, tmp_path):
    short = tempfile.mkdtemp(prefix="rs", dir="/tmp")
    try:
        out = tmp_path / "o.parquet"
        # --backend torch: the default (onnx on a CPU) finishes these 14 rows so soon that the signal
        # lands in Ray's teardown (held there by cancel.deferred, tests/test_cancel_deferred.py), or
        # after the run; torch keeps it in the middle of the run, which is what this test is about.
        args = ["embed", jsonl, "--text-column", "text", "--label-column", "label", "--id-column", "id",
                "--shard-size", "3", "--batch-size", "2", "--threads", "1", "--engine", "ray", "--workers", "2",
                "--backend", "torch", "-o", out]
        p = _curate(args, {"RAY_TMPDIR": short, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"})
        manifest = tmp_path / "o.parquet.parts" / "_manifest.json"
        deadline = time.monotonic() + 240
        while p.poll() is None and time.monotonic() < deadline:
            if manifest.exists() and '"file"' in manifest.read_text():
                break  # at least one shard finished
            time.sleep(0.2)
        assert p.poll() is None, p.communicate()
        # One signal is enough even when its handler runs inside a __del__ (Python swallows that
        # exception): curate.cancel records it and the next batch or commit raises it again.
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=120)
        # 143: curate's handler unwound the run. Once in a full-suite run, before Ray's teardown held
        # signals, the process died of the signal itself (-15): the final output is still never
        # written and the finished parts stay resumable, which is what is asserted below.
        assert p.returncode in (143, -signal.SIGTERM), stderr
        assert not out.exists()
        # Finished shards stay for the re-run to resume from (tested in-process above).
        assert json.loads(manifest.read_text())["finished"]
        # The local cluster it started is gone with it (give the raylet's children a moment).
        deadline = time.monotonic() + 30
        while _processes_under(short) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _processes_under(short) == []
    finally:
        shutil.rmtree(short, ignore_errors=True)


# Bad values of the engine options: one line, exit 2, nothing written; none of these needs Ray.
def _embed_args(t):
    src = write_jsonl(t / "t.jsonl", 3)
    return ["embed", src, "--text-column", "text", "-o", t / "o.parquet"]


def _score_args(t):
    X, y = clusters(12, d=4, classes=2)
    return ["score", write_pool(t / "p.parquet", X, y), "-m", "el2n", "-o", t / "o.parquet"]


BAD = [
    (["--engine", "spark"], ["--engine spark", "local, process, ray"]),
    (["--engine", "ray", "--workers", "0"], ["--workers 0"]),
    (["--engine", "ray", "--workers", "-2"], ["--workers -2"]),
    (["--engine", "ray", "--workers", "100000"], ["--workers 100000"]),
    (["--engine", "ray", "--cpus-per-worker", "0"], ["--cpus-per-worker 0", "(0, 1024]"]),
    (["--engine", "ray", "--cpus-per-worker", "-1"], ["--cpus-per-worker -1", "(0, 1024]"]),
    (["--engine", "ray", "--cpus-per-worker", "1e9"], ["--cpus-per-worker 1000000000", "(0, 1024]"]),
    (["--engine", "ray", "--cpus-per-worker", "nan"], ["--cpus-per-worker nan"]),
    (["--engine", "ray", "--cpus-per-worker", "half"], ["--cpus-per-worker", "valid number"]),
    (["--engine", "ray", "--gpus-per-worker", "-0.5"], ["--gpus-per-worker -0.5", "[0, 256]"]),
    (["--engine", "ray", "--gpus-per-worker", "inf"], ["--gpus-per-worker inf"]),
    (["--engine", "ray", "--gpus-per-worker", "0.5", "--device", "cpu"], ["--gpus-per-worker 0.5", "--device cpu"]),
    (["--engine", "ray", "--ray-address", "nowhere"], ["--ray-address 'nowhere'", "HOST:PORT"]),
    (["--engine", "ray", "--ray-address", "host:0"], ["--ray-address 'host:0'", "port 1 to 65535"]),
    (["--engine", "ray", "--ray-address", "host:99999"], ["--ray-address 'host:99999'"]),
    (["--engine", "ray", "--ray-address", "http://host:6379"], ["--ray-address 'http://host:6379'"]),
    (["--ray-address", "auto"], ["--ray-address applies to --engine ray only"]),
    (["--engine", "process", "--cpus-per-worker", "1"], ["--cpus-per-worker applies to --engine ray only"]),
    (["--gpus-per-worker", "1"], ["--gpus-per-worker applies to --engine ray only"]),
]


# Both commands check these in one place (curate.runtime.Runtime): score gets one of each kind.
CASES = [(_embed_args, *b) for b in BAD] + [(_score_args, *BAD[i]) for i in (0, 1, 4, 9, 11, 12, 16)]


@pytest.mark.parametrize("make,extra,fragments", CASES,
                         ids=[f"{m.__name__[1:-5]} {' '.join(e)}" for m, e, _ in CASES])
def test_bad_engine_options_are_one_line(make, extra, fragments, tmp_path):
    args = make(tmp_path)
    assert_fails(args + extra, *fragments, out=tmp_path / "o.parquet", root=tmp_path)


@pytest.mark.parametrize("make", [_embed_args, _score_args], ids=["embed", "score"])
def test_engine_ray_without_ray_names_the_extra(make, tmp_path, monkeypatch):
    args = make(tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    assert_fails(args + ["--engine", "ray"], "Ray is not installed", "pip install 'curate[ray]'",
                 out=tmp_path / "o.parquet", root=tmp_path)


def test_engine_options_are_listed_in_help():
    for cmd in ("embed", "score"):
        text = " ".join(run(cmd, "--help").stdout.split())
        for fragment in ("--engine local|process|ray", "--ray-address auto|HOST:PORT|ray://HOST:PORT",
                         "--cpus-per-worker N", "(0, 1024]", "--gpus-per-worker N", "[0, 256]", "curate[ray]"):
            assert fragment in text, (cmd, fragment)


def test_an_address_nobody_answers_at_fails_fast():
    from curate.engine.ray import _probe
    from curate.errors import InputError

    with pytest.raises(InputError, match=r"--ray-address 127.0.0.1:9: nothing answers at 127.0.0.1:9"):
        _probe("127.0.0.1:9")  # the discard port: nothing listens there
    _probe("auto")  # found by Ray itself: nothing to probe here
