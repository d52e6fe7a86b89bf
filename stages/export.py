"""`distillery export`: one student to ONNX + int8 ONNX + tokenizer + model card."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import check_outputs, PARAMS_HELP, SET_HELP, one_line_errors, stage_config


@one_line_errors
def export(
    name: Annotated[str, typer.Option(help="Student to export (a folder under --students).")],
    students: Annotated[Path, typer.Option(help="Folder holding one folder per student.")] = Path("models/students"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    teacher: Annotated[Optional[Path], typer.Option(help="Teacher folder (names its base checkpoint in the card).")] = None,
    augmented: Annotated[Optional[Path], typer.Option(help="`augment` output (the transfer set's size in the card).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default exports/<name>).")] = None,
    metrics: Annotated[Optional[Path], typer.Option(help="Also write the export's figures (agreement, sizes) here, as JSON.")] = None,
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Export a student to ONNX with dynamic batch/sequence axes and check it against PyTorch on dev, by its
    task: a classifier as one graph (+ int8, model card); a multi-task student as one graph with an output per task,
    checked on every task's dev set (--prepared: the folder of prepared tasks); a seq2seq student as an encoder and
    a decoder step with a key-value cache, checked on greedy output (--prepared: the prepared parallel text).

    Settings: the `export` section (opset, min_agreement, quantize, license)."""
    from distillery.config import ExportConfig, check_name

    check_name(name, "--name (a key of students in params.yaml)")
    out = out or Path("exports") / name
    check_outputs("export", out, metrics)
    cfg = stage_config(ExportConfig, params, "export", set_)
    from distillery.io import read_json, write_metrics

    from distillery.tasks import get_task

    info = students / name / "student.json"
    task = (read_json(info).get("training") or {}).get("task", "classification") if info.is_file() else "classification"
    r = get_task(task, f"{info}:training.task").export(cfg, students / name, prepared, out, teacher, augmented)
    if "greedy_agreement_dev" in r:
        typer.echo(f"exported {name}: greedy output equal to PyTorch on {r['greedy_agreement_dev']:.2%} of dev")
    elif "onnx_agreement" in r:
        typer.echo(f"exported {name}: ONNX agreement {r['onnx_agreement']:.4%}, max |diff| {r['onnx_max_abs_diff']:.2e}")
    else:  # a multi-task student: agreement per task
        typer.echo(f"exported {name}: " + ", ".join(f"{t} agreement {v['agreement']:.4f}" for t, v in r.items()))
    if metrics:
        write_metrics(metrics, r, "export", written=out)
