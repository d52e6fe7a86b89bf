"""`distillery gen-teacher`: fine-tune the conditional masked LM teacher (C-MLM)."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import (
    check_outputs,
    PARAMS_HELP,
    SECTION_HELP,
    SET_HELP,
    one_line_errors,
    stage_config,
)


@one_line_errors
def gen_teacher(
    prepared: Annotated[Path, typer.Option(help="Folder written by `gen-prepare`.")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Where to save the teacher (save_pretrained format).")] = Path("models/teacher"),
    metrics: Annotated[Path, typer.Option(help="Masked-token accuracy on dev, as JSON.")] = Path("metrics/teacher.json"),
    live_dir: Annotated[Path, typer.Option(help="DVCLive folder for the training curve.")] = Path("dvclive/teacher"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
    section: Annotated[str, typer.Option(help=SECTION_HELP)] = "gen_teacher",
) -> None:
    """Fine-tune a masked LM on `[CLS] source [SEP] target [SEP]`, masking target tokens only (Chen et al.
    2020). Settings: `gen_teacher`."""
    from distillery.generation.config import CmlmTeacherConfig
    from distillery.generation.teacher import teacher_stage

    check_outputs("gen-teacher", out, metrics, live_dir)
    result = teacher_stage(stage_config(CmlmTeacherConfig, params, section, set_), prepared, out, metrics, live_dir)
    typer.echo(f"teacher masked-token accuracy (dev): {result['masked_token_accuracy']:.4f} -> {out}")
