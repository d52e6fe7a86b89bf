"""The `distill` stage: train one student on its transfer set against the cached teacher logits."""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distillery.config import StudentConfig
from distillery.data.prepare import load_prepared
from distillery.data.table import read_table
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict_logits
from distillery.io import write_json
from distillery.logits.store import Logits
from distillery.losses import LOSSES
from distillery.losses.kd import NEEDS_TEACHER
from distillery.metrics import task_metric
from distillery.students import STUDENTS, save_student
from distillery.teacher.train import load_teacher


def build_student_config(cls, model_args: dict, n_labels: int, pair: bool, tokenizer, name: str,
                         teacher_hidden: int | None = None):
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = [k for k in model_args if k not in fields]
    if unknown:
        raise DistilleryError(
            f"param students.{name}.model_args.{unknown[0]}: {cls.family} has no such setting; "
            f"choose from {', '.join(fields)}"
        )
    # what the data and teacher fix; model_args may still override (e.g. a narrower embed_dim)
    derived = {"num_labels": n_labels, "pair": pair, "vocab_size": len(tokenizer), "pad_id": tokenizer.pad_token_id,
               "embed_dim": teacher_hidden}
    merged = {k: v for k, v in derived.items() if k in fields and v is not None} | model_args
    return cls.Config(**merged)


def _training_batches(n: int, batch_size: int, lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, then sort by length within chunks of 50 batches (less padding, still random)."""
    perm = rng.permutation(n)
    chunk = batch_size * 50
    batches = []
    for s in range(0, n, chunk):
        part = perm[s:s + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def distill(cfg: StudentConfig, prepared_dir: str | Path, teacher_dir: str | Path, logits_dir: str | Path,
            augmented_dir: str | Path | None, out_dir: str | Path, metrics_path: str | Path,
            live_dir: str | Path) -> dict:
    from dvclive import Live

    for loss in cfg.losses:
        LOSSES.get(loss, param=f"students.{cfg.name}.losses")
    cls = STUDENTS.get(cfg.model, param=f"students.{cfg.name}.model")
    task, info, train, dev = load_prepared(prepared_dir)
    n_labels = len(info["label_names"])
    _, tokenizer, tinfo = load_teacher(teacher_dir, n_labels=n_labels)

    if cfg.transfer_set == "augmented":
        if augmented_dir is None:
            raise DistilleryError(f"param students.{cfg.name}.transfer_set: 'augmented' needs the augment output")
        data = read_table(Path(augmented_dir) / "augmented.tsv")
        labels = np.where(data["rules"].to_numpy() == "original", data["label"].to_numpy(), -100)
    else:
        data = train
        labels = train["label"].to_numpy()
    uses_teacher = any(k in NEEDS_TEACHER for k, w in cfg.losses.items() if w > 0)
    teacher_logits = None
    fp = None
    if uses_teacher:
        store = Logits(logits_dir)
        fp = store.check_teacher(teacher_dir)
        teacher_logits = store.get(data["id"].tolist(), what=f"the {cfg.transfer_set} transfer set")
        if teacher_logits.shape[1] != n_labels:
            raise DistilleryError(f"{logits_dir}: logits have {teacher_logits.shape[1]} labels, the data {n_labels}")

    torch.manual_seed(cfg.seed)
    from transformers import AutoConfig

    mcfg = build_student_config(cls, dict(cfg.model_args), n_labels, info["pair"], tokenizer, cfg.name,
                                AutoConfig.from_pretrained(teacher_dir).hidden_size)
    try:
        model = cls.from_teacher(mcfg, teacher_dir)
    except ValueError as e:
        raise DistilleryError(f"param students.{cfg.name}.model_args: {e}") from None
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    texts_a, texts_b = data["text_a"].tolist(), data["text_b"].tolist()
    pair = info["pair"]
    lengths = (data["text_a"].str.len() + data["text_b"].str.len()).to_numpy()
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    tl_t = torch.as_tensor(teacher_logits) if teacher_logits is not None else None
    history = []
    t0 = time.perf_counter()
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for epoch in range(cfg.epochs):
            model.train()
            batches = _training_batches(len(data), cfg.batch_size, lengths, rng)
            total, count = 0.0, 0
            bar = tqdm(batches, desc=f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}", unit="batch", mininterval=2.0)
            for idx in bar:
                batch = model.collate(tokenizer, [texts_a[i] for i in idx],
                                      [texts_b[i] for i in idx] if pair else None, cfg.max_seq_len)
                logits = model(**batch)
                idx_t = torch.as_tensor(idx)
                y = labels_t[idx_t]
                t = tl_t[idx_t] if tl_t is not None else None
                loss: torch.Tensor = sum(w * LOSSES.get(k)(logits, t, y, cfg.temperature) for k, w in cfg.losses.items() if w > 0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                total += loss.item() * len(idx)
                count += len(idx)
                bar.set_postfix(loss=f"{total / count:.4f}")
            dev_logits = predict_logits(model, tokenizer, dev, cfg.max_seq_len)
            dev_metric = task_metric(task.metric, dev["label"].to_numpy(), dev_logits.argmax(-1))
            train_loss = total / max(count, 1)
            if not math.isfinite(train_loss):
                raise DistilleryError(f"param students.{cfg.name}.lr: training diverged (loss {train_loss}); lower it")
            live.log_metric("train/loss", train_loss)
            live.log_metric(f"dev/{task.metric}", dev_metric)
            live.next_step()
            history.append({"epoch": epoch + 1, "loss": train_loss, f"dev_{task.metric}": dev_metric})
            print(f"{cfg.name} epoch {epoch + 1}: loss {train_loss:.4f}, dev {task.metric} {dev_metric:.4f}")
    metrics = {
        "student": cfg.name,
        "model": cfg.model,
        f"dev_{task.metric}": history[-1][f"dev_{task.metric}"],
        "train_seconds": round(time.perf_counter() - t0, 1),
        "transfer_examples": len(data),
        "params": sum(p.numel() for p in model.parameters()),
    }
    save_student(model, tokenizer, out_dir, {
        "name": cfg.name,
        "task": task.name,
        "metric": task.metric,
        "label_names": info["label_names"],
        "max_seq_len": cfg.max_seq_len,
        "teacher_fingerprint": fp,
        "teacher_dev_metric": tinfo.get(f"dev_{task.metric}"),
        "training": {k: v for k, v in dataclasses.asdict(cfg).items()},
        "history": history,
    })
    write_json(metrics_path, metrics)
    return metrics
