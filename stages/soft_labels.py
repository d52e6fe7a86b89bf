"""`distillery soft-labels`: the teacher's raw logits for every text, cached and shared."""

from pathlib import Path
from typing import Annotated

import typer

from stages.common import one_line_errors


@one_line_errors
def soft_labels(
    batch_tokens: Annotated[int, typer.Option(help="Tokens per teacher forward pass; batches hold texts of one length, unpadded.")] = 8192,
    max_seq_len: Annotated[int, typer.Option(help="Truncate inputs to this many tokens (part of the fingerprint).")] = 64,
    bf16: Annotated[bool, typer.Option(help="bf16 autocast where the CPU/GPU supports it; --no-bf16 for fp32.")] = True,
    checkpoint_every: Annotated[int, typer.Option(help="Texts per store part (a killed run resumes from the last part).")] = 4096,
    features: Annotated[list[str], typer.Option(help="Teacher features to store too, e.g. cls@3 (layer-3 [CLS], for PKD); repeat.")] = [],
    threads: Annotated[int, typer.Option(help="torch threads (0: torch's default).")] = 0,
    teacher: Annotated[Path, typer.Option(help="Teacher folder written by `teacher`.")] = Path("models/teacher"),
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    augmented: Annotated[str, typer.Option(help="Folder written by `augment`; '' for none.")] = "data/augmented",
    store: Annotated[Path, typer.Option(help="Content-addressed logit store (git-ignored, reused across runs).")] = Path(".cache/logits"),
    out: Annotated[Path, typer.Option(help="Output folder: fp16 shards + manifest.json.")] = Path("data/logits"),
    metrics: Annotated[Path, typer.Option(help="Counts of texts labelled and reused, as JSON.")] = Path("metrics/soft_labels.json"),
) -> None:
    """Label train, augmented and dev texts with the teacher; only texts the store has not seen run the teacher.

    Scale out with `torchrun --nproc-per-node N -m stages.cli soft-labels ...` (or `accelerate launch`):
    each process labels every N-th batch into the shared store; rank 0 writes the output."""
    from distillery.config import SoftLabelConfig

    cfg = SoftLabelConfig(batch_tokens=batch_tokens, max_seq_len=max_seq_len, bf16=bf16, checkpoint_every=checkpoint_every,
                          features=tuple(features), threads=threads)
    from distillery.logits.run import soft_labels as run

    m = run(cfg, teacher, prepared, Path(augmented) if augmented else None, out, store, metrics)
    if "rank" in m:  # a worker process under torchrun; rank 0 reports
        return
    typer.echo(f"soft-labels: {m['texts']} texts ({m['labelled']} labelled, {m['reused']} reused) -> {out}")
