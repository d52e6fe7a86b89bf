"""`distillery evaluate`: one table comparing the teacher with every student."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import one_line_errors


def student_names(params: Path) -> list[str]:
    """The keys of `students:` in a params file, in their order there."""
    import yaml

    from distillery.errors import DistilleryError

    if not params.is_file():
        raise DistilleryError(f"{params}: no such file; name the students with --student, or give --params")
    try:
        doc = yaml.safe_load(params.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DistilleryError(f"{params}: not valid YAML ({str(e).splitlines()[0]})") from None
    block = doc.get("students") if isinstance(doc, dict) else None
    if not isinstance(block, dict) or not block:
        raise DistilleryError(f"{params}: no `students:` block; name the students with --student")
    return [str(k) for k in block]


@one_line_errors
def evaluate(
    threads: Annotated[int, typer.Option(help="torch threads for the latency runs (fixed, so runs compare).")] = 2,
    repeats: Annotated[int, typer.Option(help="Timed forward passes per batch size (the median is reported).")] = 30,
    warmup: Annotated[int, typer.Option(help="Untimed forward passes first.")] = 5,
    batch_size: Annotated[list[int], typer.Option(help="Batch sizes to time (repeat the option).")] = [1, 32],
    runtime: Annotated[list[str], typer.Option(help="Runtimes to score and time (repeat): pytorch, onnx, int8.")] = ["pytorch", "onnx", "int8"],
    opset: Annotated[int, typer.Option(help="ONNX opset for the teacher's export (the students' come from `export`).")] = 17,
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    teacher: Annotated[Path, typer.Option(help="Teacher folder.")] = Path("models/teacher"),
    students: Annotated[Path, typer.Option(help="Folder holding one folder per student.")] = Path("models/students"),
    exports: Annotated[Path, typer.Option(help="Folder of `export` outputs (each student's ONNX and int8 ONNX).")] = Path("exports"),
    out: Annotated[Path, typer.Option(help="Where summary.json, table.md, tradeoff.csv and tradeoff.png go.")] = Path("metrics/eval"),
    student: Annotated[list[str], typer.Option(help="A student to evaluate (repeat); default: every key of `students` in --params.")] = [],
    params: Annotated[Path, typer.Option(help="params.yaml whose `students` keys name the students to evaluate.")] = Path("params.yaml"),
) -> None:
    """Metric, retention, agreement, size and CPU latency of every model in each runtime, on --prepared's dev.tsv."""
    from distillery.config import EvaluateConfig, check_name

    cfg = EvaluateConfig(threads=threads, repeats=repeats, warmup=warmup, batch_sizes=tuple(batch_size),
                         runtimes=tuple(runtime), opset=opset)
    names = list(student) or student_names(params)
    for n in names:
        check_name(n, "--student" if student else f"students in {params}")
    from distillery.evaluate.report import evaluate as run

    result = run(cfg, prepared, teacher, students, out, exports, names)
    typer.echo("\n" + result["markdown"])
