"""The one latency statistic of every table (main pipeline, MT-DNN, C-MLM): the median wall time of one call,
the models taking turns on the same inputs.

In each round every model runs once on that round's input (prepared untimed: tokenising and padding are not
the model's time), so a burst of load on the machine slows them all alike instead of one model's whole
measurement; the median over rounds drops the odd slow call. Warm-up rounds are run and not counted.
"""

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm


def interleaved_median_ms(calls: list[Callable], inputs: Callable[[int, int], object], rounds: int, warmup: int,
                          desc: str = "timing") -> list[float]:
    """For each of `calls`, the median ms of one call `calls[k](inputs(r, k))` over `rounds` rounds r after
    `warmup` rounds, the calls interleaved within each round (module docstring)."""
    times: list[list[float]] = [[] for _ in calls]
    for r in tqdm(range(warmup + rounds), desc=desc, unit="round", mininterval=2):
        for k, call in enumerate(calls):
            x = inputs(r, k)
            t0 = time.perf_counter()
            call(x)
            if r >= warmup:
                times[k].append((time.perf_counter() - t0) * 1000)
    return [statistics.median(t) for t in times]


@dataclass
class Runner:
    """One model in one runtime: how to batch texts, and how to get logits for a batch."""

    model: str
    family: str
    runtime: str  # pytorch | onnx | int8
    collate: Callable[[list[str], list[str] | None], dict]
    run: Callable[[dict], np.ndarray]
    params_m: float
    disk_mb: float


@torch.inference_mode()
def latencies_ms(runners: list[Runner], frame: pd.DataFrame, batch_size: int, cfg,
                 pair: bool) -> list[float]:
    """Median ms of one call (batching excluded) for each runner, over `repeats` batches of real texts after
    `warmup`, the runners interleaved (`evaluate/latency.py`, the one statistic of every table)."""
    rng = np.random.default_rng(0)
    rounds = [frame.iloc[rng.choice(len(frame), size=min(batch_size, len(frame)), replace=False)]
              for _ in range(cfg.warmup + cfg.repeats)]
    texts = [(sub["text_a"].tolist(), sub["text_b"].tolist() if pair else None) for sub in rounds]
    return interleaved_median_ms([r.run for r in runners], lambda r, k: runners[k].collate(*texts[r]), cfg.repeats,
                                 cfg.warmup, desc=f"timing at batch {batch_size}")
