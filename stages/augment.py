"""`distillery augment`: Tang et al. 2019's transfer set (masking, POS replacement, n-grams)."""

import os
from pathlib import Path
from typing import Annotated

import typer

from stages.common import one_line_errors


@one_line_errors
def augment(
    p_mask: Annotated[float, typer.Option(help="Probability that a word becomes [MASK].")] = 0.1,
    p_pos: Annotated[float, typer.Option(help="Probability that a word becomes another word of its POS tag.")] = 0.1,
    p_ng: Annotated[float, typer.Option(help="Probability of keeping only a random n-gram.")] = 0.25,
    max_ng: Annotated[int, typer.Option(help="Largest n for n-gram sampling.")] = 5,
    n_iter: Annotated[int, typer.Option(help="Augmented copies drawn per example (before de-duplication).")] = 20,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same output byte for byte.")] = 0,
    tagger: Annotated[str, typer.Option(help="spaCy pipeline with a tagger (en_core_web_sm works offline), or 'none'.")] = "en_core_web_sm",
    workers: Annotated[int, typer.Option(help="Processes (0: one per CPU core). The output does not depend on it.")] = 0,
    prepared: Annotated[Path, typer.Option(help="Folder written by `prepare`.")] = Path("data/prepared"),
    out: Annotated[Path, typer.Option(help="Output folder (augmented.tsv).")] = Path("data/augmented"),
    metrics: Annotated[Path, typer.Option(help="Counts per rule, as JSON.")] = Path("metrics/augment.json"),
) -> None:
    """Write the training texts plus generated copies, each with its id, source id and rules applied."""
    from distillery.config import AugmentConfig

    cfg = AugmentConfig(p_mask=p_mask, p_pos=p_pos, p_ng=p_ng, max_ng=max_ng, n_iter=n_iter, seed=seed, tagger=tagger)
    from distillery.augment.run import augment as run

    m = run(cfg, prepared, out, metrics, workers=workers or os.cpu_count() or 1)
    typer.echo(f"augment: {m['originals']} originals + {m['generated']} generated -> {out}")
