"""`distillery evaluate`: one table comparing the teacher with every student."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import one_line_errors


@one_line_errors
def evaluate(
    threads: Annotated[int, typer.Option(help="torch threads for the latency runs (fixed, so runs compare).")] = 2,
    repeats: Annotated[int, typer.Option(help="Timed forward passes per batch size (the median is reported).")] = 30,
    warmup: Annotated[int, typer.Option(help="Untimed forward passes first.")] = 5,
    batch_size: Annotated[list[int], typer.Option(help="Batch sizes to time (repeat the option).")] = [1, 32],
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    teacher: Annotated[Path, typer.Option(help="Teacher folder.")] = Path("models/teacher"),
    students: Annotated[Path, typer.Option(help="Folder holding one folder per student.")] = Path("models/students"),
    exports: Annotated[Path, typer.Option(help="Folder of `export` outputs (adds ONNX agreement and int8 metric).")] = Path("exports"),
    out: Annotated[Path, typer.Option(help="Where summary.json, table.md, tradeoff.csv and tradeoff.png go.")] = Path("metrics/eval"),
) -> None:
    """Dev metric, teacher retention, parameters, size on disk and CPU latency at each batch size."""
    from distillery.config import EvaluateConfig
    from distillery.evaluate.report import evaluate as run

    cfg = EvaluateConfig(threads=threads, repeats=repeats, warmup=warmup, batch_sizes=tuple(batch_size))
    result = run(cfg, prepared, teacher, students, out, exports)
    typer.echo("\n" + result["markdown"])
