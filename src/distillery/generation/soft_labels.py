"""Per-token soft labels of the C-MLM teacher: the top-k logits (fp16) and their token ids at every target
position (the target's tokens and its final [SEP]), each position predicted with itself masked.

Rows are keyed by position: the pair's id (a 64-bit text hash) plus the position j, so a pair's rows are
consecutive keys and lie side by side once sorted. They live, like the classifier logits, in the
content-addressed store (`.cache/logits/<fingerprint>-cmlm-c<copies>/<precision>/.../part-*.npz`,
checksummed parts): a re-run labels only pairs it has not seen, a killed run resumes, and `torchrun`
splits the batches over processes as for the classifier logits. The stage output (`data/soft_labels/`)
holds exactly the prepared training pairs in the one artifact format (`logits/artifact.py`: checksummed
shards, a manifest naming the teacher), its token ids a column beside the logits.
"""

import time
from pathlib import Path

import numpy as np
import torch

from distillery.data.batching import length_batches
from distillery.dist import World, finish, init_world
from distillery.generation.config import GenSoftLabelConfig
from distillery.generation.data import Encoded, encode, load_split, teacher_inputs
from distillery.generation.masks import strided_masks
from distillery.teacher.mlm import mlm_head, uses_segments
from distillery.hardware import bf16_supported
from distillery.io import write_metrics
from distillery.logits.artifact import write_logits
from distillery.logits.fingerprint import ids_to_u64
from distillery.logits.label import fill_store
from distillery.logits.store import LogitStore

STORE_FEATURES = ("ids",)  # the store's and artifact's column beside the top-k logits: their token ids


def topk_store(root: str | Path, fingerprint: str, top_k: int, precision: str) -> LogitStore:
    """The one logit store, a row per target position: the top-k logits (fp16) and their token `ids` (int32)."""
    return LogitStore(root, fingerprint, top_k, features=STORE_FEATURES, precision=precision)


def position_keys(pair_keys: np.ndarray, n_positions: np.ndarray) -> np.ndarray:
    """uint64 keys of every target position: pair key + j, pairs one after another."""
    rep = np.repeat(pair_keys, n_positions)
    offs = np.arange(int(n_positions.sum()), dtype=np.uint64) - np.repeat(np.cumsum(n_positions) - n_positions,
                                                                         n_positions).astype(np.uint64)
    return rep + offs


@torch.inference_mode()
def topk_batch(model, head, enc: Encoded, rows: np.ndarray, max_copies: int, top_k: int, use_bf16: bool):
    """Top-k logits and ids of every target position of `rows` (pairs of one teacher-input length), with the
    strided copies stacked into one forward pass. Returns (pair index, position, values, ids) per position."""
    ids, seg, start = teacher_inputs(enc, rows)
    inputs, segments, masks, owner, first = [], [], [], [], []
    for r, (x, s, st) in enumerate(zip(ids, seg, start)):
        n_pos = len(x) - st  # target tokens + final [SEP]
        m = np.zeros((min(max_copies, n_pos), len(x)), dtype=bool)
        m[:, st:] = strided_masks(n_pos, max_copies)
        masks.append(m)
        inputs.extend([x] * len(m))
        segments.extend([s] * len(m))
        owner.append(np.full(len(m), r))
        first.append(st)
    device = next(model.parameters()).device
    masked = torch.from_numpy(np.concatenate(masks))  # (copies, L)
    input_ids = torch.tensor(inputs).masked_fill(masked, enc.mask).to(device)  # (copies, L): one length, no padding
    kw = {"token_type_ids": torch.tensor(segments, device=device)} if uses_segments(model) else {}
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        hidden = model.base_model(input_ids=input_ids, **kw).last_hidden_state  # (copies, L, d)
        logits = head(hidden[masked.to(device)]).float()  # (n_positions, V)
    values, top = logits.topk(top_k, dim=-1)  # (n_positions, k)
    row, col = masked.nonzero(as_tuple=True)
    copy_owner = np.concatenate(owner)[row.numpy()]
    position = col.numpy() - np.asarray(first)[copy_owner]
    return copy_owner, position, values.cpu().numpy(), top.cpu().numpy().astype(np.int32)


def label_pairs(model, enc: Encoded, pair_ids: list[str], store: LogitStore, max_copies: int, top_k: int,
                batch_tokens: int, bf16: bool, checkpoint_every: int, world: World | None = None) -> dict:
    """Make sure the store holds every target position of every pair; label only pairs it lacks (through the
    one labelling loop, `fill_store`)."""
    world = world or World()
    pair_keys = ids_to_u64(pair_ids)
    n_pos = np.array([len(t) + 1 for t in enc.tgt], dtype=np.int64)
    found, _ = store.lookup(position_keys(pair_keys, n_pos))
    complete = np.logical_and.reduceat(found, np.concatenate([[0], np.cumsum(n_pos)[:-1]])) if len(found) else found
    todo = np.flatnonzero(~complete)
    head = mlm_head(model)
    model.eval()
    use_bf16 = bf16 and bf16_supported(next(model.parameters()).device.type)
    lengths = np.array([len(enc.src[i]) + len(enc.tgt[i]) + 3 for i in todo], dtype=np.int64)
    batches = length_batches(lengths, batch_tokens=max(batch_tokens // max_copies, 1), tie=pair_keys[todo])
    batches = batches[world.rank::world.size]
    hits = [0, 0]  # teacher top-1 equal to the reference token, positions labelled

    def answers():
        for b in batches:
            rows = todo[b]
            owner, position, values, top = topk_batch(model, head, enc, rows, max_copies, top_k, use_bf16)
            gold = np.array([(enc.tgt[rows[o]] + [enc.sep])[p] for o, p in zip(owner, position)])
            hits[0] += int((top[:, 0] == gold).sum())
            hits[1] += len(gold)
            yield pair_keys[rows][owner] + position.astype(np.uint64), {"logits": values, "ids": top}, len(rows)

    secs = fill_store(store, answers(), int(sum(len(b) for b in batches)), checkpoint_every, unit="pair")
    return {"labelled_pairs": len(todo), "reused_pairs": int(complete.sum()), "positions": int(n_pos.sum()),
            "teacher_seconds": round(secs, 1), "top1_equals_reference": round(hits[0] / hits[1], 4) if hits[1] else None,
            "precision": "bf16" if use_bf16 else "fp32"}


def write_topk(out_dir: Path, pair_ids: list[str], enc: Encoded, store: LogitStore, meta: dict) -> None:
    """The stage output, in the one artifact format (`logits/artifact.py`): every target position of `pair_ids`
    from the store (keys: pair key + position), its top-k logits and token ids, and a manifest."""
    n_pos = np.array([len(t) + 1 for t in enc.tgt], dtype=np.int64)
    keys = np.sort(position_keys(ids_to_u64(pair_ids), n_pos))
    write_logits(out_dir, keys, store.get_all(keys), {**meta, "pairs": len(pair_ids), "positions": len(keys)},
                 features=STORE_FEATURES, kind="soft-labels")


def soft_labels_stage(cfg: GenSoftLabelConfig, teacher_dir: Path, prepared: Path, store_dir: Path, out_dir: Path,
                      metrics: Path) -> dict:
    from distillery.generation.teacher import check_positions
    from distillery.teacher.mlm import load_mlm
    from distillery.hardware import precision
    from distillery.logits.fingerprint import teacher_fingerprint

    model, tok = load_mlm(str(teacher_dir))
    frame = load_split(prepared, "train")
    enc = encode(tok, frame)
    check_positions(model, enc)
    world = init_world()
    model.to(world.device)  # a GPU where there is one (bf16 autocast where it supports it)
    fp = teacher_fingerprint(teacher_dir, cfg.max_copies)
    prec = precision(cfg.bf16, world.device.type)
    store = topk_store(store_dir, f"{fp}-cmlm", cfg.top_k, prec)
    world.barrier()
    t0 = time.perf_counter()
    ids = frame["id"].tolist()
    stats = label_pairs(model, enc, ids, store, cfg.max_copies, cfg.top_k, cfg.batch_tokens, prec == "bf16",
                        cfg.checkpoint_every, world)
    world.barrier()
    if not world.is_main:
        finish(world)
        return stats
    if world.size > 1:
        store = topk_store(store_dir, f"{fp}-cmlm", cfg.top_k, prec)
    write_topk(out_dir, ids, enc, store, {"fingerprint": fp, "teacher": str(teacher_dir), "copies": cfg.max_copies,
                                          "top_k": cfg.top_k, "precision": prec})
    result = {"pairs": len(ids), **stats, "processes": world.size, "seconds": round(time.perf_counter() - t0, 1)}
    write_metrics(metrics, result, "soft-labels", written=out_dir)
    finish(world)
    return result

