"""`distillery teacher`: fine-tune the teacher on the prepared data."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import PARAMS_HELP, SECTION_HELP, SET_HELP, check_outputs, one_line_errors, read_params
from stages.common import section_values_set, stage_config, task_stage


@one_line_errors
def teacher(
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Where to save the teacher (save_pretrained format).")] = Path("models/teacher"),
    metrics: Annotated[Path, typer.Option(help="Dev metrics JSON.")] = Path("metrics/teacher.json"),
    live_dir: Annotated[Path, typer.Option(help="DVCLive folder for the training curves.")] = Path("dvclive/teacher"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
    section: Annotated[str, typer.Option(help=SECTION_HELP)] = "teacher",
) -> None:
    """Fine-tune a sequence classifier from a base checkpoint with the transformers Trainer (a seq2seq study:
    the C-MLM teacher, a masked LM on `[CLS] source [SEP] target [SEP]`).

    Settings: the `teacher` section (base_model, max_seq_len, epochs, batch_size, lr, ...)."""
    from distillery.config import TeacherConfig
    from distillery.io import write_metrics

    check_outputs("teacher", out, metrics, live_dir)
    doc = read_params(params, required=True)
    own = task_stage(doc, "train_teacher")
    if own:  # seq2seq: the C-MLM teacher (a masked LM on source and target)
        typer.echo(own(section_values_set(doc, section, set_), section, prepared, out, metrics, live_dir))
        return
    cfg = stage_config(TeacherConfig, params, section, set_)
    from distillery.teacher.train import train_teacher

    result = train_teacher(cfg, prepared, out, live_dir)
    write_metrics(metrics, result, "teacher", written=out)
    typer.echo(f"teacher dev {result['metric']}: {result['dev_' + result['metric']]:.4f} -> {out}")
