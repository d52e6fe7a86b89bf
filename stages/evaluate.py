"""`distillery evaluate`: one table comparing the teacher with every student."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import PARAMS_HELP, SET_HELP, one_line_errors, read_params, stage_config


def student_names(params: Path) -> list[str]:
    """The keys of `students:` in a params file, in their order there."""
    from distillery.errors import DistilleryError

    block = read_params(params, required=True).get("students")
    if not isinstance(block, dict) or not block:
        raise DistilleryError(f"{params}: no `students:` block; name the students with --student")
    return [str(k) for k in block]


@one_line_errors
def evaluate(
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    teacher: Annotated[Path, typer.Option(help="Teacher folder.")] = Path("models/teacher"),
    students: Annotated[Path, typer.Option(help="Folder holding one folder per student.")] = Path("models/students"),
    exports: Annotated[Path, typer.Option(help="Folder of `export` outputs (each student's ONNX and int8 ONNX).")] = Path("exports"),
    out: Annotated[Path, typer.Option(help="Where summary.json, table.md, tradeoff.csv and tradeoff.png go.")] = Path("metrics/eval"),
    student: Annotated[list[str], typer.Option(help="A student to evaluate (repeat); default: every key of `students` in --params.")] = [],
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Metric, retention, agreement, size and CPU latency of every model in each runtime, on --prepared's dev.tsv.

    Settings: the `evaluate` section (threads, repeats, warmup, batch_sizes, runtimes, opset)."""
    from distillery.config import EvaluateConfig, check_name

    cfg = stage_config(EvaluateConfig, params, "evaluate", set_)
    names = list(student) or student_names(params)
    for n in names:
        check_name(n, "--student" if student else f"students in {params}")
    from distillery.evaluate.report import evaluate as run

    result = run(cfg, prepared, teacher, students, out, exports, names)
    typer.echo("\n" + result["markdown"])
