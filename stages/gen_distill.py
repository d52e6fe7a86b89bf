"""`distillery gen-distill`: train a sequence-to-sequence student (C-MLM study)."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import (
    check_outputs,
    PARAMS_HELP,
    SET_HELP,
    apply_sets,
    one_line_errors,
    read_params,
    section_values,
)


@one_line_errors
def gen_distill(
    name: Annotated[str, typer.Option(help="A key of `students` in params.yaml.")] = "",
    prepared: Annotated[Path, typer.Option(help="Folder written by `gen-prepare`.")] = Path("data/prepared"),
    soft_labels: Annotated[Path, typer.Option(help="The soft-labels artifact (for alpha > 0).")] = Path("data/soft_labels"),
    teacher: Annotated[Path, typer.Option(help="The teacher whose soft labels these are (checked).")] = Path("models/teacher"),
    out: Annotated[Path, typer.Option(help="Where to save the student.")] = Path("models/students/student"),
    metrics: Annotated[Path, typer.Option(help="Training figures and dev BLEU, as JSON.")] = Path("metrics/students/student.json"),
    live_dir: Annotated[Path, typer.Option(help="DVCLive folder for the training curves.")] = Path("dvclive/student"),
    params: Annotated[Path, typer.Option(help=PARAMS_HELP)] = Path("params.yaml"),
    set_: Annotated[list[str], typer.Option("--set", help=SET_HELP)] = [],
) -> None:
    """Train a Transformer encoder-decoder on (1 - alpha) * label-smoothed likelihood + alpha * KD on the
    teacher's top-k distributions, word by word (Chen et al. 2020). Settings: `gen_distill`, then
    `students.<name>`."""
    from distillery.config import check
    from distillery.generation.config import seq2seq_config
    from distillery.generation.train import distill_stage

    doc = read_params(params, required=True)
    students = doc.get("students") if isinstance(doc.get("students"), dict) else {}
    check(bool(name) and name in students, f"students.{name}",
           f"no such student; choose one of: {', '.join(doc.get('students') or {}) or 'none'} (--name)")
    block = section_values(doc, f"students.{name}") or {}
    cfg = seq2seq_config(name, apply_sets(block, set_) if isinstance(block, dict) else block, doc.get("gen_distill") or {})
    check_outputs("gen-distill", out, metrics, live_dir)
    r = distill_stage(cfg, prepared, soft_labels if cfg.alpha > 0 else None, teacher, out, metrics, live_dir)
    typer.echo(f"{name}: dev BLEU {r['dev_bleu_greedy']:.2f} (greedy) after {r['steps']} steps -> {out}")
