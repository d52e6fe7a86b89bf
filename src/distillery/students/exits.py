"""Adaptive inference with early exits (FastBERT, Liu et al. 2020), batched: numpy only.

One copy of this file ships with every exported FastBERT student (`fastbert_runtime.py`), so the same
code answers in `evaluate`, in `export`'s agreement check and in the model card's usage example.

A model with exits is driven layer by layer through a *runner*:

- `runner.n_layers`: L, the number of layers (layer L's exit is the backbone's own classifier);
- `runner.embed(inputs) -> (h, mask)`: the embedding output (bs, n, d) and the token mask (bs, n);
- `runner.layer(i, h, mask) -> (h, logits)`: layer i (1-based) and its exit's logits (bs, C);
- `runner.take(h, mask, rows) -> (h, mask)`: those rows, with trailing all-padding columns trimmed;
- `runner.join(parts) -> (h, mask)`: chunks padded to one length and stacked.

`adaptive_predict` runs a layer only on the rows still in play: a row whose exit is certain enough
(normalised entropy below `speed`) leaves with that exit's logits; the rest go on. With `pool`, the
rows left over from several input batches are pooled into full batches before their next layer, so a
few hard texts do not keep nearly empty batches going. `OnnxRunner` drives the exported graphs
(`embeddings.onnx`, `layer1.onnx` ... `layerL.onnx`, or their `.int8.onnx` twins) with onnxruntime.
"""

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from distillery.errors import damaged_onnx


def uncertainty(logits: np.ndarray) -> np.ndarray:
    """FastBERT's normalised entropy, in [0, 1]: u = -sum_c p_c log p_c / log C, p = softmax(logits).
    logits (bs, C) -> (bs,)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(-1) / np.log(z.shape[-1])


def first_exit(uncertainties: np.ndarray, speed: float) -> np.ndarray:
    """The exit (1-based) each row takes, from its uncertainty at every exit (n, L): the first exit
    with u < speed, else the last. (`speed` 0: every row runs the whole backbone.)"""
    early = uncertainties[:, :-1] < speed
    return np.where(early.any(1), early.argmax(1) + 1, uncertainties.shape[1])


def adaptive_predict(runner, batches: Iterable[tuple[np.ndarray, object]], n_rows: int, speed: float,
                     pool: bool = False, pool_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n_rows, C), exit layer (n_rows,)) for batches of (row numbers, model inputs).

    Without `pool` each batch runs to its end alone. With it, survivors wait at their next layer
    until `pool_size` rows (default: the largest input batch) are there, then run together."""
    n_layers = runner.n_layers
    logits: np.ndarray | None = None
    exits = np.zeros(n_rows, dtype=np.int64)
    waiting: list[list] = [[] for _ in range(n_layers)]  # waiting[l]: chunks (rows, h, mask) due at layer l+1
    size = pool_size

    def run(layer: int, rows: np.ndarray, h, mask) -> None:
        nonlocal logits
        h, z = runner.layer(layer, h, mask)
        z = np.asarray(z, dtype=np.float32)
        if logits is None:
            logits = np.zeros((n_rows, z.shape[-1]), dtype=np.float32)
        done = uncertainty(z) < speed if layer < n_layers else np.ones(len(rows), dtype=bool)
        logits[rows[done]] = z[done]
        exits[rows[done]] = layer
        if not done.all():
            keep = np.flatnonzero(~done)
            waiting[layer].append((rows[keep], *runner.take(h, mask, keep)))

    def drain(full_only: bool) -> None:
        for layer in range(1, n_layers):  # shallow to deep: survivors of one layer join the next's pool
            while waiting[layer]:
                count = sum(len(c[0]) for c in waiting[layer])
                if full_only and count < size:
                    break
                chunks, taken = [], 0
                while waiting[layer] and taken < max(size, 1):
                    rows, h, mask = waiting[layer].pop(0)
                    if taken + len(rows) > size > 0:  # split a chunk to fill the batch exactly
                        cut = size - taken
                        rest = np.arange(cut, len(rows))
                        waiting[layer].insert(0, (rows[cut:], *runner.take(h, mask, rest)))
                        rows, (h, mask) = rows[:cut], runner.take(h, mask, np.arange(cut))
                    chunks.append((rows, h, mask))
                    taken += len(rows)
                h, mask = runner.join([(h, m) for _, h, m in chunks]) if len(chunks) > 1 else chunks[0][1:]
                run(layer + 1, np.concatenate([c[0] for c in chunks]), h, mask)

    for rows, inputs in batches:
        rows = np.asarray(rows)
        size = max(size, len(rows)) if not pool_size else pool_size
        h, mask = runner.embed(inputs)
        run(1, rows, h, mask)
        if pool:
            drain(full_only=True)
        else:
            drain(full_only=False)
    drain(full_only=False)
    if logits is None:
        raise ValueError("adaptive_predict: no input rows")
    return logits, exits


def _trim(h: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = max(int(mask.sum(1).max()), 1) if len(mask) else 1
    return h[:, :n], mask[:, :n]


class OnnxRunner:
    """The exported graphs of a FastBERT student in onnxruntime (see the module docstring)."""

    def __init__(self, folder: str | Path, int8: bool = False, threads: int = 0) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        suffix = ".int8.onnx" if int8 else ".onnx"
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def open_graph(name: str):
            path = folder / f"{name}{suffix}"
            try:
                return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001 - onnxruntime's own error types
                raise damaged_onnx(path, e) from None

        self.embeddings = open_graph("embeddings")
        self.layers = []
        while (folder / f"layer{len(self.layers) + 1}{suffix}").is_file():
            self.layers.append(open_graph(f"layer{len(self.layers) + 1}"))
        self.n_layers = len(self.layers)
        self.input_names = [i.name for i in self.embeddings.get_inputs()]  # input_ids (, token_type_ids)

    def embed(self, inputs: dict) -> tuple[np.ndarray, np.ndarray]:
        """`inputs`: the tokenizer's arrays (numpy, or anything `np.asarray` takes), with attention_mask."""
        (h,) = self.embeddings.run(["hidden"], {k: np.asarray(inputs[k], dtype=np.int64) for k in self.input_names})
        return h, np.asarray(inputs["attention_mask"], dtype=np.int64)

    def layer(self, i: int, h: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, logits = self.layers[i - 1].run(["hidden_out", "logits"], {"hidden": h, "attention_mask": mask})
        return h, logits

    def take(self, h: np.ndarray, mask: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _trim(h[rows], mask[rows])

    def join(self, parts: list) -> tuple[np.ndarray, np.ndarray]:
        n = max(h.shape[1] for h, _ in parts)
        hs = [np.pad(h, ((0, 0), (0, n - h.shape[1]), (0, 0))) for h, _ in parts]
        ms = [np.pad(m, ((0, 0), (0, n - m.shape[1]))) for _, m in parts]
        return np.concatenate(hs), np.concatenate(ms)
