"""The engine options `embed` and `score` share: where their per-shard/per-chunk tasks run.

Typer reads a command's options from its signature, so each command lists these parameters
itself with the ``typer.Option`` objects below as defaults (one help text, one range).
Values are checked in ``curate.runtime.Runtime``.
"""

from __future__ import annotations

import typer

ENGINE = typer.Option(
    "local", "--engine", metavar="local|process|ray",
    help="Where tasks run: 'local' (threads of this process), 'process' (worker processes here) or 'ray' "
         "(a Ray cluster; needs the extra: pip install 'curate[ray]'). The output is the same with each.")
RAY_ADDRESS = typer.Option(
    None, "--ray-address", metavar="auto|HOST:PORT|ray://HOST:PORT",
    help="--engine ray: the cluster to use: 'auto' (the one `ray start` runs on this machine), HOST:PORT of its "
         "head, or ray://HOST:PORT (Ray Client); default: start a private local Ray for this run.")
CPUS_PER_WORKER = typer.Option(
    None, "--cpus-per-worker", metavar="N",
    help="--engine ray: CPUs each worker reserves, in (0, 1024], fractions allowed (default: 1, or an equal "
         "share leaving one share free when the cluster has fewer CPUs than workers + 1).")
GPUS_PER_WORKER = typer.Option(
    None, "--gpus-per-worker", metavar="N",
    help="--engine ray: GPUs each worker reserves, in [0, 256], fractions allowed (0.5: two workers per GPU; "
         "default: 1 with --device cuda, else 0).")


def workers_option(what: str) -> typer.models.OptionInfo:
    return typer.Option(1, "--workers", metavar="N", help=f"{what} run concurrently, 1 to 4096 (with --engine ray: actors).")


__all__ = ["ENGINE", "RAY_ADDRESS", "CPUS_PER_WORKER", "GPUS_PER_WORKER", "workers_option"]
