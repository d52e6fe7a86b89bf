"""`distillery soft-labels`: the teacher's raw logits for every text, cached and shared."""

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import one_line_errors


@one_line_errors
def soft_labels(
    batch_size: Annotated[int, typer.Option(help="Texts per teacher forward pass (length-sorted, padded per batch).")] = 128,
    max_seq_len: Annotated[int, typer.Option(help="Truncate inputs to this many tokens (part of the fingerprint).")] = 64,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast where the CPU/GPU supports it; --no-bf16 for fp32.")] = True,
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 0,
    teacher: Annotated[Path, typer.Option(help="Teacher folder written by `teacher`.")] = Path("models/teacher"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    augmented: Annotated[Optional[Path], typer.Option(help="Folder written by `augment` (optional).")] = Path("data/augmented"),
    store: Annotated[Path, typer.Option(help="Content-addressed logit store (git-ignored, reused across runs).")] = Path(".cache/logits"),
    out: Annotated[Path, typer.Option(help="Output folder: fp16 shards + manifest.json.")] = Path("data/logits"),
    metrics: Annotated[Path, typer.Option(help="Counts of texts labelled and reused, as JSON.")] = Path("metrics/soft_labels.json"),
) -> None:
    """Label train, augmented and dev texts with the teacher; only texts the store has not seen run the teacher."""
    from distillery.config import SoftLabelConfig
    from distillery.logits.run import soft_labels as run

    cfg = SoftLabelConfig(batch_size=batch_size, max_seq_len=max_seq_len, bf16=bf16)
    m = run(cfg, teacher, prepared, augmented, out, store, metrics, threads=threads)
    typer.echo(f"soft-labels: {m['texts']} texts ({m['labelled']} labelled, {m['reused']} reused) -> {out}")
