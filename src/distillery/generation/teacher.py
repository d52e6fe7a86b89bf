"""The C-MLM teacher (Chen et al. 2020): a masked LM fine-tuned on `[CLS] source [SEP] target [SEP]` to
predict masked target tokens from the source and the rest of the target.

Any Hugging Face masked LM loads with its own head. A plain encoder checkpoint (all-MiniLM-L6-v2 is a
`BertModel`) gets `BertForMaskedLM`'s head: the decoder tied to the word embeddings, the transform newly
initialised. The vocabulary projection, the costly part (vocab x width per token), runs on the masked
positions only.
"""

import contextlib
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distillery.data.batching import length_batches
from distillery.errors import DistilleryError
from distillery.generation.config import CmlmTeacherConfig
from distillery.generation.data import Encoded, encode, load_split, pad, teacher_inputs
from distillery.generation.masks import training_mask
from distillery.hardware import bf16_supported
from distillery.io import atomic_dir, staged_live, write_json


@contextlib.contextmanager
def quiet_transformers():
    """transformers' weight-loading report (missing head weights are expected here) kept out of the log."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def load_mlm(name: str):
    """(model, tokenizer) of a masked LM: a folder written by this stage, a hub id or a known offline name."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from distillery.teacher.models import resolve_model

    path = resolve_model(name)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForMaskedLM.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise DistilleryError(f"teacher.base_model {name!r}: cannot load a masked LM ({str(e).splitlines()[0]}); "
                              "give a Hugging Face id (with a network) or a local folder") from None
    return model, tokenizer


def mlm_head(model):
    """The callable that maps hidden states (n, d) to vocabulary logits (n, V) for this architecture."""
    for attr in ("cls", "lm_head", "generator_lm_head"):  # BERT-likes; RoBERTa/XLM-R; ELECTRA
        if hasattr(model, attr):
            head = getattr(model, attr)
            if attr == "generator_lm_head":
                return lambda h: head(model.generator_predictions(h))
            return head
    if hasattr(model, "vocab_projector"):  # DistilBERT
        return lambda h: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(h))))
    raise DistilleryError(f"{type(model).__name__}: no known masked-LM head; use a BERT, RoBERTa, DistilBERT or "
                          "ELECTRA masked LM")


def uses_segments(model) -> bool:
    return getattr(model.config, "type_vocab_size", 0) >= 2


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


def masked_logits(model, head, batch: dict, masked: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Vocabulary logits (n_masked, V) at the `masked` positions, the inputs there replaced by [MASK]."""
    inputs = batch["input_ids"].masked_fill(masked, mask_id)
    kw = {k: batch[k] for k in ("attention_mask", "token_type_ids") if k in batch}
    hidden = model.base_model(input_ids=inputs, **kw).last_hidden_state  # (bs, L, d)
    return head(hidden[masked])  # (n_masked, V)


@torch.no_grad()
def masked_accuracy(model, enc: Encoded, cfg: CmlmTeacherConfig, batch_size: int = 64) -> float:
    """Share of masked target tokens (masked as in training, a fixed seed) predicted exactly."""
    model.eval()
    head, gen = mlm_head(model), torch.Generator().manual_seed(cfg.seed + 1)
    right = total = 0
    for s in range(0, len(enc.src), batch_size):
        batch = batch_tensors(model, enc, range(s, min(s + batch_size, len(enc.src))))
        masked = training_mask(batch["target"], batch["eos"], cfg.mask_prob, cfg.eos_mask_prob, gen)
        logits = masked_logits(model, head, batch, masked, enc.mask)
        right += int((logits.argmax(-1) == batch["input_ids"][masked]).sum())
        total += int(masked.sum())
    return right / max(total, 1)


def train_cmlm(model, enc: Encoded, dev: Encoded, cfg: CmlmTeacherConfig, live=None) -> dict:
    """Fine-tune with cross-entropy on the masked target tokens; returns the metrics."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(cfg.seed)
    check_positions(model, enc)
    head = mlm_head(model)
    lengths = np.array([len(s) + len(t) + 3 for s, t in zip(enc.src, enc.tgt)])
    rng = np.random.default_rng(cfg.seed)
    per_epoch = math.ceil(len(lengths) / cfg.batch_size)
    total = int(round(per_epoch * cfg.epochs))
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm", "layer_norm"))]
    rest = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm", "layer_norm"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=cfg.lr)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), max(total, 1))
    use_bf16 = cfg.bf16 and bf16_supported("cpu")
    gen = torch.Generator().manual_seed(cfg.seed)
    step, t0, losses = 0, time.perf_counter(), []
    bar = tqdm(total=total, desc="teacher", unit="step", mininterval=5)
    model.train()
    while step < total:
        for rows in length_batches(lengths, batch_size=cfg.batch_size, rng=rng):
            if step >= total:
                break
            batch = batch_tensors(model, enc, rows)
            masked = training_mask(batch["target"], batch["eos"], cfg.mask_prob, cfg.eos_mask_prob, gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                logits = masked_logits(model, head, batch, masked, enc.mask)
            loss = torch.nn.functional.cross_entropy(logits.float(), batch["input_ids"][masked])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            if live is not None and step % 50 == 0:
                live.log_metric("train/loss", float(np.mean(losses[-50:])))
                live.next_step()
    bar.close()
    secs = time.perf_counter() - t0
    acc = masked_accuracy(model, dev, cfg)
    return {"masked_token_accuracy": round(acc, 4), "train_pairs": len(lengths), "steps": total,
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None,
            "train_seconds": round(secs, 1), "precision": "bf16" if use_bf16 else "fp32"}


def teacher_stage(cfg: CmlmTeacherConfig, prepared: Path, out_dir: Path, metrics: Path, live_dir: Path) -> dict:
    from distillery.generation.teacher import load_mlm, train_cmlm
    from dvclive import Live

    model, tok = load_mlm(cfg.base_model)
    train, dev = encode(tok, load_split(prepared, "train")), encode(tok, load_split(prepared, "dev"))
    with staged_live(live_dir) as (live_tmp, publish):  # curves change together with the model
        with Live(str(live_tmp), dvcyaml=False, save_dvc_exp=False) as live:
            result = train_cmlm(model, train, dev, cfg, live)
        with atomic_dir(out_dir, "teacher") as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
        publish()
    result = {"base_model": cfg.base_model, **result}
    write_json(metrics, result)
    return result

