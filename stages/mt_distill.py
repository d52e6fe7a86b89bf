"""`distillery mt-distill`: train a multi-task (or single-task) student (MT-DNN KD study)."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import check_outputs, PARAMS_HELP, SET_HELP, apply_sets, one_line_errors, read_params, section_values


@one_line_errors
def mt_distill(
    name: Annotated[str, typer.Option(help="A multi-task student: a key of `students` (not with --single-task).")] = "",
    single_task: Annotated[str, typer.Option(help="Train the `single_task` student on this one task instead.")] = "",
    prepared: Annotated[Path, typer.Option(help="Folder of prepared tasks (one sub-folder per task).")] = Path("data/prepared"),
    ensemble_dir: Annotated[Path, typer.Option("--ensemble", help="Folder of ensembles (one per task).")] = Path("data/ensemble"),
    out: Annotated[Path, typer.Option(help="Where to save the student.")] = Path("models/students/student"),
    metrics: Annotated[Path, typer.Option(help="Per-task dev metrics, as JSON.")] = Path("metrics/students/student.json"),
    live_dir: Annotated[Path, typer.Option(help="DVCLive folder for the training curves.")] = Path("dvclive/student"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Train a student with a shared encoder and a head per task (MT-DNN KD): batches of one task each,
    tasks in proportion to their size; per task the student's losses against gold labels and the
    ensemble's probabilities (gold labels only where a task has no teacher).
    Settings: `mt_distill`, then `students.<name>` (or `single_task`)."""
    from distillery.config import _check, multitask_config
    from distillery.multitask.train import train_multitask

    doc = read_params(params, required=True)
    _check(bool(name) != bool(single_task), "--name", "give exactly one of --name (a multi-task student) or "
           "--single-task (a task)")
    defaults = doc.get("mt_distill") or {}
    if name:
        block = section_values(doc, f"students.{name}")
        _check(isinstance(block, dict) and bool(block), f"students.{name}",
               f"no such student; choose one of: {', '.join(doc.get('students') or {}) or 'none'}")
        cfg = multitask_config(name, f"students.{name}", apply_sets(block, set_), defaults)
    else:
        cfg = multitask_config(f"single_{single_task}", "single_task", apply_sets(doc.get("single_task") or {}, set_),
                               defaults, tasks=(single_task,))
    check_outputs("distill", out, metrics, live_dir)
    m = train_multitask(cfg, prepared, ensemble_dir, out, metrics, live_dir)
    typer.echo(f"{cfg.name}: dev " + ", ".join(f"{t} {v['metric']} {v['dev']:.4f}" for t, v in m["tasks"].items())
               + f" (average {m['dev_average']:.4f}) -> {out}")
