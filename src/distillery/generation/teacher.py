"""The C-MLM teacher (Chen et al. 2020): a masked LM fine-tuned on `[CLS] source [SEP] target [SEP]` to
predict masked target tokens from the source and the rest of the target.

Any Hugging Face masked LM loads with its own head. A plain encoder checkpoint (all-MiniLM-L6-v2 is a
`BertModel`) gets `BertForMaskedLM`'s head: the decoder tied to the word embeddings, the transform newly
initialised. The vocabulary projection, the costly part (vocab x width per token), runs on the masked
positions only.
"""

from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from distillery.errors import DistilleryError
from distillery.generation.config import CmlmTeacherConfig
from distillery.generation.data import Encoded, encode, load_split, pad, teacher_inputs
from distillery.generation.masks import training_mask
from distillery.io import write_metrics
from distillery.teacher.mlm import MaskedTargets, load_mlm, masked_accuracy, uses_segments
from distillery.teacher.train import PlateauStop, dev_curve, final_loss, fit_and_save


def check_positions(model, enc: Encoded) -> None:
    longest = max(len(s) + len(t) + 3 for s, t in zip(enc.src, enc.tgt))
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and longest > limit:
        raise DistilleryError(f"prepare.max_src_len + max_tgt_len: a pair of {longest} tokens is longer than the "
                              f"teacher's {limit} positions; lower the limits and re-run `distillery prepare`")


def batch_tensors(model, enc: Encoded, rows) -> dict[str, torch.Tensor]:
    """Padded teacher inputs of `rows` and the masks of their target tokens and final [SEP]."""
    ids, seg, start = teacher_inputs(enc, rows)
    input_ids = torch.from_numpy(pad(ids, enc.pad))  # (bs, L)
    lengths = torch.tensor([len(x) for x in ids])
    pos = torch.arange(input_ids.shape[1])[None, :]
    starts = torch.tensor(start)[:, None]
    out = {
        "input_ids": input_ids,
        "attention_mask": (pos < lengths[:, None]).long(),
        "target": (pos >= starts) & (pos < lengths[:, None] - 1),  # target tokens
        "eos": pos == lengths[:, None] - 1,  # the final [SEP]
    }
    if uses_segments(model):
        out["token_type_ids"] = torch.from_numpy(pad(seg, 0))
    return out


class MaskingCollator:
    """Batches of pair rows (`row`, and `dev` for the dev set) padded, their target tokens masked: drawn anew
    for every training batch (a generator seeded by `teacher.seed`), fixed for dev (drawn once, seed + 1),
    so every evaluation scores the same masks."""

    def __init__(self, model, train: Encoded, dev: Encoded, cfg: CmlmTeacherConfig) -> None:
        self.model, self.enc, self.cfg = model, {False: train, True: dev}, cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)
        dev_gen, self.dev_masks = torch.Generator().manual_seed(cfg.seed + 1), []
        for s in range(0, len(dev.src), 64):
            batch = batch_tensors(model, dev, range(s, min(s + 64, len(dev.src))))
            masked = training_mask(batch["target"], batch["eos"], cfg.mask_prob, cfg.eos_mask_prob, dev_gen)
            self.dev_masks.extend(np.flatnonzero(m) for m in masked.numpy())

    def __call__(self, features: list[dict]) -> dict:
        rows, is_dev = [f["row"] for f in features], bool(features[0].get("dev", False))
        batch = batch_tensors(self.model, self.enc[is_dev], rows)
        if is_dev:
            masked = torch.zeros_like(batch["target"])
            for r, i in enumerate(rows):
                masked[r, self.dev_masks[i]] = True
        else:
            masked = training_mask(batch["target"], batch["eos"], self.cfg.mask_prob, self.cfg.eos_mask_prob, self.gen)
        ids = batch.pop("input_ids")
        batch.pop("target"), batch.pop("eos")
        return {**batch, "input_ids": ids.masked_fill(masked, self.enc[False].mask), "labels": ids.masked_fill(~masked, -100)}


def pair_rows(enc: Encoded, dev: bool) -> Dataset:
    lengths = [len(s) + len(t) + 3 for s, t in zip(enc.src, enc.tgt)]
    return Dataset.from_dict({"row": list(range(len(lengths))), "length": lengths, "dev": [dev] * len(lengths)})


def teacher_stage(cfg: CmlmTeacherConfig, prepared: Path, out_dir: Path, metrics: Path, live_dir: Path) -> dict:
    """Fine-tune with cross-entropy on the masked target tokens through the one teacher loop; save the masked LM."""
    torch.manual_seed(cfg.seed)  # the new head's weights
    model, tok = load_mlm(cfg.base_model)
    train, dev = encode(tok, load_split(prepared, "train")), encode(tok, load_split(prepared, "dev"))
    check_positions(model, train)
    check_positions(model, dev)
    final, state, use_bf16, seconds = fit_and_save(
        cfg, MaskedTargets(model), tok, pair_rows(train, False), pair_rows(dev, True),
        MaskingCollator(model, train, dev, cfg), masked_accuracy, "masked_token_accuracy", out_dir, live_dir,
        saved=model, remove_unused_columns=False, per_device_eval_batch_size=64,
        callbacks=[PlateauStop("masked_token_accuracy", cfg.min_gain)] if cfg.min_gain else [])
    result = {"base_model": cfg.base_model, "masked_token_accuracy": round(float(final["eval_masked_token_accuracy"]), 4),
              "train_pairs": len(train.src), "steps": state.global_step,
              "curve": dev_curve(state, "masked_token_accuracy"), "final_loss": final_loss(state),
              "train_seconds": round(seconds, 1), "precision": "bf16" if use_bf16 else "fp32"}
    write_metrics(metrics, result, "teacher", written=out_dir)
    return result
