"""Batched prediction over a prepared frame, for any model and runtime (length-sorted batches,
restored to input order)."""

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from distillery.data.batching import length_batches, text_lengths


@torch.inference_mode()
def predict(collate: Callable, run: Callable, frame: pd.DataFrame, n_labels: int, pair: bool,
            batch_size: int = 256) -> np.ndarray:
    """Logits (n, n_labels) for every row, in input order: `collate(texts_a, texts_b) -> batch`,
    `run(batch) -> array` (a PyTorch forward, or an onnxruntime session)."""
    out = np.zeros((len(frame), n_labels), dtype=np.float32)
    for idx in length_batches(text_lengths(frame), batch_size=batch_size):
        sub = frame.iloc[idx]
        out[idx] = run(collate(sub["text_a"].tolist(), sub["text_b"].tolist() if pair else None))
    return out


def predict_logits(model, tokenizer, frame: pd.DataFrame, max_seq_len: int, run: Callable | None = None,
                   batch_size: int = 256) -> np.ndarray:
    """A student's main-head logits for every row; `run` replaces its PyTorch forward (export passes
    an onnxruntime session). Batches come from the student's own `collate`."""
    pair = bool((frame["text_b"] != "").any())
    model.eval()
    return predict(lambda a, b: model.collate(tokenizer, a, b, max_seq_len),
                   run or model.predictor(),
                   frame, model.config.num_labels, pair, batch_size)
