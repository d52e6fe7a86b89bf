"""Teacher inference, the pipeline's hot path: length-bucketed unpadded batches in inference mode,
bf16 where the hardware has it, checkpointed into the store as it goes. `fill_store` is the one labelling
loop: every task's teacher answers (the classifier's logits here, C-MLM's top-k per token in
`generation/soft_labels.py`) go through it into the one store."""

import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from distillery.data.batching import length_batches
from distillery.errors import DistilleryError
from distillery.hardware import bf16_supported
from distillery.logits.arrays import column, parse_features
from distillery.logits.fast_bert import cls_only_logits, supports_fast_path
from distillery.logits.fingerprint import ids_to_u64
from distillery.logits.store import LogitStore


def fill_store(store: LogitStore, answers: Iterable[tuple[np.ndarray, dict[str, np.ndarray], int]], total: int,
               checkpoint_every: int, desc: str = "soft-labels", unit: str = "text") -> float:
    """Write the teacher's `answers` ((keys, columns, items done) per batch) into the store, a checksummed part
    each `checkpoint_every` items (texts, pairs: a killed run keeps what was written), under a progress bar of
    `total` items. Returns the seconds taken."""
    pending: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []
    since = 0

    def flush() -> None:
        if pending:
            store.add(np.concatenate([k for k, _ in pending]),
                      {c: np.concatenate([cols[c] for _, cols in pending]) for c in pending[0][1]})
            pending.clear()

    t0 = time.perf_counter()
    with tqdm(total=total, desc=desc, unit=unit, smoothing=0.05, mininterval=2) as bar:
        for keys, cols, done in answers:
            pending.append((keys, cols))
            since += done
            if since >= checkpoint_every:
                flush()
                since = 0
            bar.update(done)
    flush()
    return time.perf_counter() - t0


@torch.inference_mode()
def teacher_answers(model, tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_seq_len: int,
                    batch_tokens: int, bf16: bool, tie: np.ndarray | None = None,
                    batches: list[np.ndarray] | None = None, features: Sequence[str] = (),
                    where: str = "the teacher") -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(indices, {"logits": (bs, labels), "cls_3": (bs, hidden), ...}) per batch, in length-bucketed batches
    with no padding; everything tokenised in one fast-tokenizer call."""
    n = len(texts_a)
    if n == 0:
        return
    feats = parse_features(features, model.config.num_hidden_layers)
    enc = tokenizer(list(texts_a), list(texts_b) if texts_b is not None else None,
                    truncation=True, max_length=max_seq_len)
    ids = enc["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=n)
    if batches is None:
        batches = length_batches(lengths, batch_tokens=batch_tokens, tie=tie)
    device = next(model.parameters()).device
    use_bf16 = bf16 and bf16_supported(device.type)
    extra = [k for k in ("token_type_ids",) if k in enc]
    fast = not feats and supports_fast_path(model)  # exact; skips the last layer's non-[CLS] work
    for idx in batches:
        batch = {"input_ids": torch.tensor([ids[i] for i in idx], device=device)}  # (bs, len): one length per batch
        for k in extra:
            batch[k] = torch.tensor([enc[k][i] for i in idx], device=device)
        # no attention_mask: every row of a batch has the same length, so nothing is masked (and SDPA
        # takes its unmasked path)
        cols = {}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            if fast:
                logits = cls_only_logits(model, batch["input_ids"], batch.get("token_type_ids"))
            else:
                res = model(**batch, output_hidden_states=bool(feats))
                logits = res.logits
                for (_, layer), name in zip(feats, features):
                    cols[column(name)] = res.hidden_states[layer][:, 0].float().cpu().numpy()  # (bs, hidden)
        cols = {"logits": logits.float().cpu().numpy(), **cols}  # (bs, num_labels)
        if not np.isfinite(cols["logits"]).all():  # never stored: a NaN would poison every student
            raise DistilleryError(f"{where}: the teacher gives NaN or infinite logits (texts of {len(ids[idx[0]])} "
                                  "tokens); its weights are damaged or its training diverged: re-run "
                                  "`distillery teacher`, nothing was stored")
        yield idx, cols


def run_teacher(model, tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_seq_len: int,
                batch_tokens: int, bf16: bool, features: Sequence[str] = ()) -> np.ndarray | dict:
    """Logits for every text in input order (float32), or, when `features` are asked for, a dict
    {"logits": ..., "cls_3": ...}."""
    n = len(texts_a)
    out = {"logits": np.zeros((n, model.config.num_labels), dtype=np.float32)}
    for name in features:
        out[column(name)] = np.zeros((n, model.config.hidden_size), dtype=np.float32)
    for idx, cols in teacher_answers(model, tokenizer, texts_a, texts_b, max_seq_len, batch_tokens, bf16,
                                     features=features):
        for c, v in cols.items():
            out[c][idx] = v
    return out if features else out["logits"]


def label_texts(model, tokenizer, ids: Sequence[str], texts_a: Sequence[str], texts_b: Sequence[str] | None,
                store: LogitStore, max_seq_len: int, batch_tokens: int, bf16: bool,
                checkpoint_every: int = 4096, rank: int = 0, world_size: int = 1,
                features: Sequence[str] = (), where: str = "the teacher") -> dict:
    """Make sure the store holds logits for every id; label only the missing ones.

    With world_size > 1 this process takes every world_size-th batch of the same deterministic plan.
    """
    keys = ids_to_u64(ids)
    found, _ = store.lookup(keys)
    todo = np.flatnonzero(~found)
    a = [texts_a[i] for i in todo]
    b = [texts_b[i] for i in todo] if texts_b is not None else None
    batches = None
    if world_size > 1:
        enc = tokenizer(a, b, truncation=True, max_length=max_seq_len)["input_ids"]
        lengths = np.fromiter((len(x) for x in enc), dtype=np.int64, count=len(todo))
        batches = length_batches(lengths, batch_tokens=batch_tokens, tie=keys[todo])[rank::world_size]
    mine = len(todo) if batches is None else int(sum(len(b) for b in batches))
    answers = teacher_answers(model, tokenizer, a, b, max_seq_len, batch_tokens, bf16, tie=keys[todo],
                              batches=batches, features=features, where=where)
    secs = fill_store(store, ((keys[todo[idx]], cols, len(idx)) for idx, cols in answers), mine, checkpoint_every)
    return {"labelled": int(len(todo)), "reused": int(found.sum()), "teacher_seconds": round(secs, 2),
            "texts_per_second": round(mine / secs, 1) if mine and secs > 0 else 0.0}
