"""`distillery mt-evaluate`: the MT-DNN KD study's table."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import PARAMS_HELP, SET_HELP, apply_sets, one_line_errors, read_params


@one_line_errors
def mt_evaluate(
    prepared: Annotated[Path, typer.Option(help="Folder of prepared tasks.")] = Path("data/prepared"),
    ensemble_metrics: Annotated[Path, typer.Option(help="Folder of the ensemble stages' metrics (<task>.json).")] = Path("metrics/ensemble"),
    teachers: Annotated[Path, typer.Option(help="Folder of member teachers.")] = Path("models/teachers"),
    students: Annotated[Path, typer.Option(help="Folder of multi-task students.")] = Path("models/students"),
    single: Annotated[Path, typer.Option(help="Folder of single-task students (<task>/).")] = Path("models/single"),
    exports: Annotated[Path, typer.Option(help="Folder of multi-task exports.")] = Path("exports"),
    out: Annotated[Path, typer.Option(help="Output folder: table.md, table.csv, summary.json, tasks.png.")] = Path("metrics/eval"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """One table: a row per model (single teacher, ensemble, single-task students, each multi-task student
    and its export), a column per task in its metric, the average, parameters and latency."""
    from distillery.config import MtEvaluateConfig, from_section, study_tasks
    from distillery.multitask.report import mt_evaluate as run

    doc = read_params(params, required=True)
    cfg = from_section(MtEvaluateConfig, "mt_evaluate", apply_sets(doc.get("mt_evaluate") or {}, set_))
    run(cfg, study_tasks(doc), list(doc.get("students") or {}), prepared, ensemble_metrics, teachers, students, single,
        exports, out)

