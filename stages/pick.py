"""`distillery pick`: the best student under a latency budget, from a table `evaluate` wrote (nothing is timed again).
Not a pipeline stage: `evaluate` marks the pick for `evaluate.budget` itself; this answers other budgets."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import PARAMS_HELP, one_line_errors, read_params, section_values


def _budget(params: Path, max_ms: float | None, batch_size: int | None, runtime: str | None,
            min_retention: float | None) -> dict:
    """evaluate.budget of the params file (where it has one), each option given replacing its key."""
    from distillery.errors import DistilleryError

    base = section_values(read_params(params), "evaluate").get("budget") or {}
    given = {"max_ms_per_text": max_ms, "batch_size": batch_size, "runtime": runtime, "min_retention": min_retention}
    budget = {**(base if isinstance(base, dict) else {}), **{k: v for k, v in given.items() if v is not None}}
    if "max_ms_per_text" not in budget:
        raise DistilleryError(f"no budget: give --max-ms-per-text (or set evaluate.budget in {params})")
    return budget


@one_line_errors
def pick(
    table: Annotated[Path, typer.Option(help="An evaluate table (tradeoff.csv: one row per model and runtime).")] = Path("metrics/eval/tradeoff.csv"),
    max_ms_per_text: Annotated[Optional[float], typer.Option(help="The latency a text may take, in ms.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="At this batch size (one the table timed).")] = None,
    runtime: Annotated[Optional[str], typer.Option(help="pytorch, onnx, int8, or any (every runtime a student ships in).")] = None,
    min_retention: Annotated[Optional[float], typer.Option(help="The share of the teacher's main metric to keep (0 to 1).")] = None,
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
) -> None:
    """The student with the highest main metric among those within the budget (then the lowest latency), from the
    figures of an `evaluate` run; with none within it, by how much the fastest misses. Settings not given as options
    come from evaluate.budget in --params."""
    import json

    import pandas as pd

    from distillery.config import check_int, check_num
    from distillery.errors import DistilleryError
    from distillery.evaluate.budget import Budget, candidates, describe_pick
    from distillery.evaluate.budget import pick as choose

    b = _budget(params, max_ms_per_text, batch_size, runtime, min_retention)
    check_num(b["max_ms_per_text"], "--max-ms-per-text", 0, lo_open=True)
    check_int(b.get("batch_size", 1), "--batch-size", 1)
    check_num(b.get("min_retention", 0.0), "--min-retention", 0, 1)
    if b.get("runtime", "any") not in ("pytorch", "onnx", "int8", "any"):
        raise DistilleryError(f"--runtime {b['runtime']!r}: use pytorch, onnx, int8 or any")
    if not table.is_file():
        raise DistilleryError(f"--table {table}: no such file; run `distillery evaluate` (or dvc repro) first")
    frame = pd.read_csv(table)
    need = {"model", "runtime", "score", "retention"} - set(frame.columns)
    if need:
        raise DistilleryError(f"--table {table}: not an evaluate table (no column {sorted(need)[0]!r})")
    summary = table.parent / "summary.json"
    metric = json.loads(summary.read_text(encoding="utf-8")).get("metric", "score") if summary.is_file() else "score"
    budget = Budget(**b)
    result = choose(frame, budget, metric)
    rows = candidates(frame, budget)
    rows = rows[(rows.ms_per_text <= budget.max_ms_per_text) & (rows.retention >= budget.min_retention)]
    for r in rows.sort_values(["score", "ms_per_text"], ascending=[False, True]).head(8).itertuples():
        typer.echo(f"  {r.model:<20} {r.runtime:<8} {r.ms_per_text:8.2f} ms/text  {metric} {r.score:.4f}  "
                   f"retention {r.retention:.1%}")
    typer.echo(describe_pick(result, metric).replace("**", ""))
