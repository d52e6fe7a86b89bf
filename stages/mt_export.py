"""`distillery mt-export`: one ONNX graph answering every task of a multi-task student."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import check_outputs, PARAMS_HELP, SET_HELP, apply_sets, one_line_errors, read_params


@one_line_errors
def mt_export(
    student: Annotated[Path, typer.Option(help="A multi-task student folder written by `mt-distill`.")],
    prepared: Annotated[Path, typer.Option(help="Folder of prepared tasks (dev sets check the export).")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Output folder: model.onnx (an output per task), tokenizer, tasks.json.")] = Path("exports/student"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Export a multi-task student as one ONNX graph that answers every task (settings: `mt_export`)."""
    from distillery.config import check, check_int, check_num
    from distillery.multitask.export import export_multitask

    cfg = apply_sets(read_params(params, required=True).get("mt_export") or {}, set_)
    check(set(cfg) == {"opset", "min_agreement"}, "mt_export", "must set exactly opset and min_agreement")
    check_int(cfg["opset"], "mt_export.opset", 13, 23)
    check_num(cfg["min_agreement"], "mt_export.min_agreement", 0, 1)
    check_outputs("mt-export", out)
    rep = export_multitask(student, prepared, out, cfg["opset"], cfg["min_agreement"])
    typer.echo("exported: " + ", ".join(f"{t} agreement {r['agreement']:.4f}" for t, r in rep.items()) + f" -> {out}")
