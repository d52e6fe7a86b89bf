"""`distillery gen-evaluate`: the generation study's table (BLEU, size, latency)."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import (
    PARAMS_HELP,
    SET_HELP,
    one_line_errors,
    read_params,
    stage_config,
)


@one_line_errors
def gen_evaluate(
    models: Annotated[Path, typer.Option(help="Folder of students (one sub-folder each).")] = Path("models/students"),
    exports: Annotated[Path, typer.Option(help="Folder of exports (one sub-folder each).")] = Path("exports"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `gen-prepare` (its test split is scored).")] = Path("data/prepared"),
    teacher_metrics: Annotated[Path, typer.Option(help="The teacher's metrics (`gen-teacher`).")] = Path("metrics/teacher.json"),
    out: Annotated[Path, typer.Option(help="Folder for table.md, table.csv, summary.json, bleu.png.")] = Path("metrics/eval"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Score every student of `students` on the test set: sacreBLEU with beam search (PyTorch) and greedy
    (its ONNX export), parameters, latency per sentence at batch 1 and 32. Settings: `gen_evaluate`."""
    from distillery.generation.config import GenEvaluateConfig
    from distillery.generation.report import evaluate_stage

    cfg = stage_config(GenEvaluateConfig, params, "gen_evaluate", set_)
    evaluate_stage(cfg, list(read_params(params, required=True).get("students") or {}), models, exports, prepared,
                   teacher_metrics, out)
