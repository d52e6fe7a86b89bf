"""Batched prediction with any student family (length-sorted batches, restored to input order)."""

import numpy as np
import pandas as pd
import torch


def batches_by_length(frame: pd.DataFrame, batch_size: int) -> list[np.ndarray]:
    """Row-index batches of similar text length (cheap proxy: characters)."""
    lengths = frame["text_a"].str.len().to_numpy() + frame["text_b"].str.len().to_numpy()
    order = np.argsort(-lengths, kind="stable")
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


@torch.inference_mode()
def predict_logits(model, tokenizer, frame: pd.DataFrame, max_seq_len: int, batch_size: int = 256,
                   run=None) -> np.ndarray:
    """Logits for every row, in input order. `run(batch) -> array` replaces the PyTorch forward
    (export passes an onnxruntime session); batches come from the model's own `collate`."""
    pair = bool((frame["text_b"] != "").any())
    out = np.zeros((len(frame), model.config.num_labels), dtype=np.float32)
    model.eval()
    run = run or (lambda batch: model(**batch).float().numpy())
    for idx in batches_by_length(frame, batch_size):
        sub = frame.iloc[idx]
        batch = model.collate(tokenizer, sub["text_a"].tolist(), sub["text_b"].tolist() if pair else None, max_seq_len)
        out[idx] = run(batch)
    return out
