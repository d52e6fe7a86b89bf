"""Training the sequence-to-sequence student: (1 - alpha) * label-smoothed likelihood + alpha * top-k KD from
the C-MLM teacher's stored soft labels, word by word (Chen et al. 2020); alpha 0 is the likelihood-only
baseline, trained for the same steps on the same batches."""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distillery.data.batching import length_batches
from distillery.errors import DistilleryError
from distillery.generation.config import Seq2SeqConfig
from distillery.generation.data import Encoded, encode, load_split, load_tokenizer
from distillery.generation.losses import cmlm_loss
from distillery.generation.soft_labels import TopK
from distillery.generation.student import (
    allowed_ids,
    build_student,
    decoder_io,
    encoder_inputs,
    n_params,
    output_vocab,
    subset_logits,
)
from distillery.io import atomic_dir, read_json, staged_live, write_json


class TeacherTargets:
    """The teacher's top-k (values, ids) per target position of the training pairs, gathered per batch."""

    def __init__(self, topk: TopK, pair_ids: list[str], enc: Encoded, k: int, param: str) -> None:
        stored = int(topk.manifest.get("top_k", topk.logits.shape[1]))
        if k > stored:
            raise DistilleryError(f"param {param}.top_k: {k}, but the soft labels keep {stored} per token; lower it "
                                  "or raise gen_soft_labels.top_k and re-run gen-soft-labels")
        self.n_pos = np.array([len(t) + 1 for t in enc.tgt], dtype=np.int64)
        self.first = topk.offsets(pair_ids, self.n_pos, "the training data")
        self.values, self.ids, self.k = topk.logits, topk.ids, k

    def batch(self, rows: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(bs, width, k) values and ids (vocabulary ids); positions past a pair's end hold zeros (their
        labels are -100)."""
        values = np.zeros((len(rows), width, self.k), dtype=np.float32)
        ids = np.zeros((len(rows), width, self.k), dtype=np.int64)
        for r, i in enumerate(rows):
            sl = slice(self.first[i], self.first[i] + self.n_pos[i])
            values[r, :self.n_pos[i]] = self.values[sl, :self.k]
            ids[r, :self.n_pos[i]] = self.ids[sl, :self.k]
        return torch.from_numpy(values), torch.from_numpy(ids)


def make_optimizer(model, cfg: Seq2SeqConfig, total: int):
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    return opt, get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), max(total, 1))


def train_seq2seq(model, cfg: Seq2SeqConfig, enc: Encoded, targets: TeacherTargets | None, live=None) -> dict:
    """Train `model` in place for `cfg.epochs` over `enc` (batches of similar length, shuffled, seeded)."""
    if cfg.alpha > 0 and targets is None:
        raise DistilleryError(f"param {cfg.param}.alpha: {cfg.alpha} needs the teacher's soft labels (--soft-labels)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    lengths = np.array([len(s) + len(t) for s, t in zip(enc.src, enc.tgt)])
    total = int(math.ceil(math.ceil(len(lengths) / cfg.batch_size) * cfg.epochs))
    opt, sched = make_optimizer(model, cfg, total)
    vocab = allowed_ids(model)
    table = torch.full((model.config.vocab_size,), -1, dtype=torch.long)  # vocabulary id -> output index
    table[vocab] = torch.arange(len(vocab))
    model.train()
    step, t0, logged = 0, time.perf_counter(), []
    bar = tqdm(total=total, desc=f"gen-distill {cfg.name}", unit="step", mininterval=5)
    while step < total:
        for rows in length_batches(lengths, batch_size=cfg.batch_size, rng=rng):
            if step >= total:
                break
            dec_in, labels = decoder_io(enc, rows)
            logits = subset_logits(model, encoder_inputs(enc, rows), dec_in, vocab)  # (bs, T, |vocab|)
            labels = torch.where(labels == -100, labels, table[labels.clamp(min=0)])
            values, ids = targets.batch(rows, labels.shape[1]) if cfg.alpha > 0 else (None, None)
            if ids is not None:
                ids = table[ids]  # -1: outside the output vocabulary
            loss, parts = cmlm_loss(logits, labels, values, ids, cfg.alpha, cfg.temperature, cfg.label_smoothing)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            logged.append(parts)
            step += 1
            bar.update(1)
            if live is not None and step % 50 == 0:
                for key in parts:
                    live.log_metric(f"train/{key}", float(np.mean([p[key] for p in logged[-50:]])))
                live.next_step()
    bar.close()
    last = logged[-50:]
    return {"steps": total, "train_pairs": len(lengths), "train_seconds": round(time.perf_counter() - t0, 1),
            **{f"final_{k}": round(float(np.mean([p[k] for p in last])), 4) for k in (last[0] if last else {})}}


def distill_stage(cfg: Seq2SeqConfig, prepared: Path, soft_labels: Path | None, teacher_dir: Path | None,
                  out_dir: Path, metrics: Path, live_dir: Path) -> dict:
    """Train student `cfg.name` (soft labels checked against the teacher), score it on dev (greedy BLEU), save it."""
    from distillery.generation.decode import bleu, translate
    from dvclive import Live

    limits = read_json(Path(prepared) / "limits.json")
    tok = load_tokenizer(limits["tokenizer"])
    frame, dev_frame = load_split(prepared, "train"), load_split(prepared, "dev")
    enc, dev = encode(tok, frame), encode(tok, dev_frame)
    vocab = output_vocab(cfg, enc, len(tok))
    targets, outside = None, None
    if cfg.alpha > 0:
        if soft_labels is None or teacher_dir is None:
            raise DistilleryError(f"param {cfg.param}.alpha: {cfg.alpha} > 0 needs --soft-labels and --teacher")
        if load_tokenizer(str(teacher_dir)).get_vocab() != tok.get_vocab():
            raise DistilleryError(f"{teacher_dir}: the teacher's vocabulary differs from gen_prepare.tokenizer "
                                  f"{limits['tokenizer']!r}; teacher and student must share one: set both to one model")
        topk = TopK(soft_labels)
        topk.check_teacher(teacher_dir)
        targets = TeacherTargets(topk, frame["id"].tolist(), enc, cfg.top_k, cfg.param)
        top1 = topk.ids[:, 0]
        outside = round(float(1 - np.isin(top1, vocab).mean()), 4)
    model = build_student(cfg, tok, max(limits["max_src_len"], limits["max_tgt_len"]) + 1, vocab)
    with staged_live(live_dir) as (live_tmp, publish):  # curves change together with the model
        with Live(str(live_tmp), dvcyaml=False, save_dvc_exp=False) as live:
            result = train_seq2seq(model, cfg, enc, targets, live)
            t0 = time.perf_counter()
            hyps = translate(model, tok, dev, 1, 64, limits["max_tgt_len"] + 1)
            result["dev_bleu_greedy"] = bleu(hyps, list(dev_frame["tgt"]))
            result["dev_seconds"] = round(time.perf_counter() - t0, 1)
            live.log_metric("dev/bleu_greedy", result["dev_bleu_greedy"])
        result.update({"name": cfg.name, "alpha": cfg.alpha, "top_k": cfg.top_k, "temperature": cfg.temperature,
                       "params": n_params(model), "output_vocab": len(vocab), "teacher_top1_outside_vocab": outside})
        with atomic_dir(out_dir, "gen-distill") as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            write_json(tmp / "student.json", {**dataclasses.asdict(cfg), "steps": result["steps"]})
        publish()
    write_json(metrics, result)
    return result
