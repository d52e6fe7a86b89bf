"""`distillery gen-soft-labels`: the C-MLM teacher's top-k logits for every target token, via the store."""

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
def gen_soft_labels(
    teacher: Annotated[Path, typer.Option(help="The teacher folder (`gen-teacher`).")] = Path("models/teacher"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `gen-prepare`.")] = Path("data/prepared"),
    store: Annotated[Path, typer.Option(help="Content-addressed store of teacher outputs (git-ignored).")] = Path(".cache/logits"),
    out: Annotated[Path, typer.Option(help="The soft-labels artifact.")] = Path("data/soft_labels"),
    metrics: Annotated[Path, typer.Option(help="Counts and timing, as JSON.")] = Path("metrics/soft_labels.json"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
    section: Annotated[str, typer.Option(help=SECTION_HELP)] = "gen_soft_labels",
) -> None:
    """Mask every target position exactly once (strided copies of each pair) and keep the teacher's top-k
    logits and token ids there; pairs already in the store are not labelled again. Scale out with
    `torchrun --nproc-per-node N $(which distillery) gen-soft-labels ...`. Settings: `gen_soft_labels`."""
    from distillery.generation.config import GenSoftLabelConfig
    from distillery.generation.soft_labels import soft_labels_stage

    check_outputs("gen-soft-labels", out, metrics)
    r = soft_labels_stage(stage_config(GenSoftLabelConfig, params, section, set_), teacher, prepared, store, out, metrics)
    typer.echo(f"soft labels: {r.get('pairs', r['labelled_pairs'])} pairs ({r['labelled_pairs']} labelled, "
               f"{r['reused_pairs']} from the store) -> {out}")
