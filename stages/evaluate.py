"""`distillery evaluate`: one table comparing the teacher with every student."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import PARAMS_HELP, SET_HELP, check_outputs, one_line_errors, read_params, section_values_set, stage_config, task_stage


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
    teacher_metrics: Annotated[Path, typer.Option(help="A seq2seq study: the teacher's metrics (its masked-token accuracy).")] = Path("metrics/teacher.json"),
    teachers: Annotated[Path, typer.Option(help="A multi-task study: the folder of ensemble members.")] = Path("models/teachers"),
    ensemble_metrics: Annotated[Path, typer.Option(help="A multi-task study: the ensembles' metrics (<task>.json).")] = Path("metrics/ensemble"),
    single: Annotated[Path, typer.Option(help="A multi-task study: the single-task students (<task>/).")] = Path("models/single"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Metric, retention, agreement, size and CPU latency of every model in each runtime, on --prepared's dev.tsv.
    Its files are one output, put in place together (README, "Errors, faults and leftovers"): --out is absent, empty or
    an earlier evaluate's folder, checked before any work.

    Settings: the `evaluate` section (threads, repeats, warmup, batch_sizes, runtimes, opset)."""
    from distillery.config import EvaluateConfig, check_name
    from distillery.io import atomic_dir

    check_outputs("evaluate", out)
    doc = read_params(params, required=True)
    own = task_stage(doc, "evaluate_study")
    if own:  # seq2seq: BLEU, size, latency; multitask: a column per task, ensembles and single-task students
        with atomic_dir(out, "evaluate") as tmp:
            paths = {"teacher": teacher, "students": students, "exports": exports, "prepared": prepared,
                     "teacher_metrics": teacher_metrics, "out": tmp, "teachers": teachers,
                     "ensemble_metrics": ensemble_metrics, "single": single}
            text = own(section_values_set(doc, "evaluate", set_), "evaluate", doc, paths)
        typer.echo(text)
        return
    cfg = stage_config(EvaluateConfig, params, "evaluate", set_)
    names = list(student) or student_names(params)
    for n in names:
        check_name(n, "--student" if student else f"students in {params}")
    from distillery.evaluate.report import evaluate as run

    with atomic_dir(out, "evaluate") as tmp:
        result = run(cfg, prepared, teacher, students, tmp, exports, names)
    typer.echo("\n" + result["markdown"])
