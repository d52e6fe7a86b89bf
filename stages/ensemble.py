"""`distillery ensemble`: average a task's ensemble members' probabilities (MT-DNN KD study)."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import check_outputs, PARAMS_HELP, one_line_errors, read_params


@one_line_errors
def ensemble(
    task: Annotated[str, typer.Option(help="The task whose members to average (a key of `tasks`).")],
    prepared: Annotated[Path, typer.Option(help="The task's folder written by `prepare`.")],
    teachers: Annotated[Path, typer.Option(help="Folder of member teachers (one sub-folder per member).")] = Path("models/teachers"),
    logits: Annotated[Path, typer.Option(help="Folder of member logits (one soft-labels output per member).")] = Path("data/logits"),
    out: Annotated[Path, typer.Option(help="Output folder: the ensemble's soft targets.")] = Path("data/ensemble/task"),
    metrics: Annotated[Path, typer.Option(help="Members' and ensemble's dev metric, as JSON.")] = Path("metrics/ensemble/task.json"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
) -> None:
    """Average the probabilities of a task's ensemble members (the `members` section) into its soft targets.
    A task with no member gets an empty artifact: its students learn from gold labels."""
    from distillery.config import members_config, study_tasks
    from distillery.multitask.ensemble import build_ensemble

    doc = read_params(params, required=True)
    if task not in study_tasks(doc):
        raise_unknown(task, doc)
    check_outputs("ensemble", out, metrics)
    m = build_ensemble(task, members_config(doc.get("members")), prepared, teachers, logits, out, metrics)
    metric = m["metric"]
    if m["members"]:
        each = ", ".join(f"{r['member']} {r[f'dev_{metric}']:.4f}" for r in m["members"])
        typer.echo(f"ensemble {task}: dev {metric} {m[f'ensemble_dev_{metric}']:.4f} (members: {each}) -> {out}")
    else:
        typer.echo(f"ensemble {task}: no teacher (no member in `members`); its students learn from gold labels -> {out}")


def raise_unknown(task: str, doc: dict):
    from distillery.config import study_tasks
    from distillery.errors import DistilleryError

    raise DistilleryError(f"--task {task}: not in the tasks section of params ({', '.join(study_tasks(doc))})")
