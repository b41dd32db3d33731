"""`curate prune`: keep the rows whose scores satisfy conditions; write them or their source records."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from curate.cli.app import app, emit, handle_errors
from curate.errors import InputError


def _human(s: dict) -> str:
    lines = [f"{s['output']}", f"rows in: {s['rows_in']}", f"rows kept: {s['rows_kept']} ({s['rows_kept'] / max(1, s['rows_in']):.1%})"]
    for cond, n in s["removed_by"].items():
        lines.append(f"removed by {cond}: {n}")
    for col, c in s["quantile_ignored"].items():
        if c["null"] or c["nan"]:
            lines.append(f"quantiles of {col} ignore {c['null']} null and {c['nan']} NaN value(s)")
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


def _int(flag: str, text: str | None) -> int | None:
    """Parse here, not in click, so a malformed value is one `curate: error:` line like every other."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise InputError(f"{flag} {text!r}: not an integer") from None


def _float(flag: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        raise InputError(f"{flag} {text!r}: not a number") from None


@app.command("prune")
@handle_errors
def prune_cmd(
    scored: str = typer.Argument(..., metavar="SCORED", help="Parquet from `curate score` (a path or an s3:// URI)."),
    output: str = typer.Option(..., "-o", "--output", metavar="OUT", help="Output: Parquet of kept rows, or with --source a file/folder in the source's format."),
    keep: List[str] = typer.Option([], "--keep", "-k", metavar="COND", help="Condition every kept row satisfies: 'COL > 0', 'COL in [q0.1, q0.9]', 'COL == null' (repeatable)."),
    per_class: bool = typer.Option(False, "--per-class", help="Resolve quantile bounds within each class."),
    keep_null: bool = typer.Option(False, "--keep-null", help="Rows with a null score satisfy conditions on it."),
    top: Optional[str] = typer.Option(None, "--top", metavar="N", help="Keep at most N rows ranked by --by (integer, 1 to 10^12)."),
    fraction: Optional[str] = typer.Option(None, "--fraction", metavar="F", help="Keep this fraction of all rows ranked by --by (0 < F <= 1)."),
    by: Optional[str] = typer.Option(None, "--by", metavar="COLUMN", help="Column that ranks rows for --top/--fraction."),
    ascending: bool = typer.Option(False, "--ascending/--descending", help="Rank lowest first (default: highest first)."),
    balanced: bool = typer.Option(False, "--balanced", help="Apply the budget per class, in proportion to class sizes."),
    random: bool = typer.Option(False, "--random", help="Baseline: keep a uniform random subset of the same size."),
    seed: str = typer.Option("0", "--seed", metavar="S", help="Seed of --random (integer, 0 to 2^32-1)."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Write an empty result instead of failing when no row is kept."),
    source: Optional[str] = typer.Option(None, "--source", metavar="INPUT", help="The input given to `curate embed` (a table file, a folder or glob of tables, or an image folder); its kept records are written to -o (a folder for folders and globs). Must be unchanged since embedding."),
    copy: bool = typer.Option(False, "--copy", help="Image folders: copy files instead of symlinking."),
    dropped: Optional[str] = typer.Option(None, "--dropped", metavar="FILE", help="Also write removed ids and the condition that removed each (.parquet, .jsonl, else CSV); committed together with -o."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs that exist."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Keep the rows satisfying every --keep condition (and a --top/--fraction budget).

    Example:

        curate prune work/scored.parquet --keep 'el2n in [q0.10, q0.90]' --keep 'rho > 0' --source data/train.jsonl -o data/train.pruned.jsonl
    """
    from curate.prune import PruneConfig, prune

    cfg = PruneConfig(keep=tuple(keep), per_class=per_class, keep_null=keep_null, top=_int("--top", top),
                      fraction=_float("--fraction", fraction), by=by, ascending=ascending, balanced=balanced,
                      random=random, seed=_int("--seed", seed), allow_empty=allow_empty)
    emit(prune(scored, output, cfg, source=source, copy=copy, dropped=dropped, overwrite=overwrite), json_out, _human)
