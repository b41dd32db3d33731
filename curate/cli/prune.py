"""`curate prune`: keep the rows whose scores satisfy conditions; write them or their source records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from curate.cli.app import app, emit, handle_errors


def _human(s: dict) -> str:
    lines = [f"{s['output']}", f"rows in: {s['rows_in']}", f"rows kept: {s['rows_kept']} ({s['rows_kept'] / max(1, s['rows_in']):.1%})"]
    for cond, bounds in s["resolved_bounds"].items():
        for b, v in bounds.items():
            if b.startswith("q"):
                shown = json.dumps(v) if isinstance(v, dict) else f"{v:.6g}" if v is not None else "null"
                lines.append(f"{cond}: {b} = {shown}")
    if "per_class" in s:
        lines.append("class\tin\tkept")
        for k, v in s["per_class"].items():
            lines.append(f"{k}\t{v['in']}\t{v['kept']}")
    return "\n".join(lines)


@app.command("prune")
@handle_errors
def prune_cmd(
    scored: Path = typer.Argument(..., help="Parquet from `curate score`."),
    output: Path = typer.Option(..., "-o", "--output", help="Output: Parquet of kept rows, or with --source a file/folder in the source's format."),
    keep: List[str] = typer.Option([], "--keep", "-k", help="Condition every kept row satisfies: 'COL > 0', 'COL in [q0.1, q0.9]' (repeatable)."),
    per_class: bool = typer.Option(False, "--per-class", help="Resolve quantile bounds within each class."),
    keep_null: bool = typer.Option(False, "--keep-null", help="Rows with a null score satisfy conditions on it."),
    top: Optional[int] = typer.Option(None, "--top", help="Keep at most N rows ranked by --by."),
    fraction: Optional[float] = typer.Option(None, "--fraction", help="Keep this fraction of all rows ranked by --by."),
    by: Optional[str] = typer.Option(None, "--by", help="Column that ranks rows for --top/--fraction."),
    ascending: bool = typer.Option(False, "--ascending/--descending", help="Rank lowest first (default: highest first)."),
    balanced: bool = typer.Option(False, "--balanced", help="Apply the budget per class, in proportion to class sizes."),
    random: bool = typer.Option(False, "--random", help="Baseline: keep a uniform random subset of the same size."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random."),
    source: Optional[Path] = typer.Option(None, "--source", help="Original dataset (JSONL, CSV, Parquet or image folder) to write kept records from."),
    copy: bool = typer.Option(False, "--copy", help="Image folders: copy files instead of symlinking."),
    dropped: Optional[Path] = typer.Option(None, "--dropped", help="Also write removed ids and the condition that removed each (.csv/.jsonl/.parquet)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that exist."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Keep the rows satisfying every --keep condition (and a --top/--fraction budget).

    Example:

        curate prune work/scored.parquet --keep 'el2n in [q0.10, q0.90]' --keep 'rho > 0' --source data/train.jsonl -o data/train.pruned.jsonl
    """
    from curate.prune import PruneConfig, prune

    cfg = PruneConfig(keep=tuple(keep), per_class=per_class, keep_null=keep_null, top=top, fraction=fraction, by=by,
                      ascending=ascending, balanced=balanced, random=random, seed=seed)
    emit(prune(scored, output, cfg, source=source, copy=copy, dropped=dropped, overwrite=overwrite), json_out, _human)
