"""Teacher inference, the pipeline's hot path: length-bucketed unpadded batches in inference mode,
bf16 where the hardware has it, checkpointed into the store as it goes."""

import time
from collections.abc import Sequence

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


@torch.inference_mode()
def run_teacher(model, tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_seq_len: int,
                batch_tokens: int, bf16: bool, on_batch=None, tie: np.ndarray | None = None,
                batches: list[np.ndarray] | None = None, features: Sequence[str] = (),
                where: str = "the teacher") -> np.ndarray | dict:
    """Logits for every text, in length-bucketed batches with no padding.

    Tokenises everything in one fast-tokenizer call. `on_batch(indices, columns)` runs after each
    batch (used to checkpoint into the store). Returns float32 logits in input order, or, when
    `features` are asked for, a dict {"logits": ..., "cls_3": ...}.
    """
    n = len(texts_a)
    feats = parse_features(features, model.config.num_hidden_layers)
    out = {"logits": np.zeros((n, model.config.num_labels), dtype=np.float32)}
    for name in features:
        out[column(name)] = np.zeros((n, model.config.hidden_size), dtype=np.float32)
    if n == 0:
        return out if features else out["logits"]
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
    bar = tqdm(total=n, desc="soft-labels", unit="text", smoothing=0.05, mininterval=2)
    for idx in batches:
        batch = {"input_ids": torch.tensor([ids[i] for i in idx], device=device)}  # (bs, len): one length per batch
        for k in extra:
            batch[k] = torch.tensor([enc[k][i] for i in idx], device=device)
        # no attention_mask: every row of a batch has the same length, so nothing is masked (and SDPA
        # takes its unmasked path)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            if fast:
                logits = cls_only_logits(model, batch["input_ids"], batch.get("token_type_ids"))
            else:
                res = model(**batch, output_hidden_states=bool(feats))
                logits = res.logits
                for (_, layer), name in zip(feats, features):
                    out[column(name)][idx] = res.hidden_states[layer][:, 0].float().cpu().numpy()  # (bs, hidden)
        out["logits"][idx] = logits.float().cpu().numpy()  # (bs, num_labels)
        if not np.isfinite(out["logits"][idx]).all():  # never stored: a NaN would poison every student
            raise DistilleryError(f"{where}: the teacher gives NaN or infinite logits (texts of {len(ids[idx[0]])} "
                                  "tokens); its weights are damaged or its training diverged: re-run "
                                  "`distillery teacher`, nothing was stored")
        if on_batch is not None:
            on_batch(idx, {c: v[idx] for c, v in out.items()})
        bar.update(len(idx))
    bar.close()
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
    batches = None
    if world_size > 1:
        enc = tokenizer([texts_a[i] for i in todo], [texts_b[i] for i in todo] if texts_b is not None else None,
                        truncation=True, max_length=max_seq_len)["input_ids"]
        lengths = np.fromiter((len(x) for x in enc), dtype=np.int64, count=len(todo))
        batches = length_batches(lengths, batch_tokens=batch_tokens, tie=keys[todo])[rank::world_size]
    pending_k: list[np.ndarray] = []
    pending_c: list[dict[str, np.ndarray]] = []

    def flush() -> None:
        if pending_k:
            store.add(np.concatenate(pending_k), {c: np.concatenate([p[c] for p in pending_c]) for c in pending_c[0]})
            pending_k.clear()
            pending_c.clear()

    def on_batch(idx: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        pending_k.append(keys[todo[idx]])
        pending_c.append(cols)
        if sum(len(k) for k in pending_k) >= checkpoint_every:
            flush()

    t0 = time.perf_counter()
    run_teacher(model, tokenizer, [texts_a[i] for i in todo],
                [texts_b[i] for i in todo] if texts_b is not None else None,
                max_seq_len, batch_tokens, bf16, on_batch=on_batch, tie=keys[todo], batches=batches,
                features=features, where=where)
    flush()
    secs = time.perf_counter() - t0
    mine = len(todo) if batches is None else int(sum(len(b) for b in batches))
    return {"labelled": int(len(todo)), "reused": int(found.sum()), "teacher_seconds": round(secs, 2),
            "texts_per_second": round(mine / secs, 1) if mine and secs > 0 else 0.0}
