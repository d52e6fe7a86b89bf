"""The `distill` stage: train one student on its transfer set against the cached teacher logits."""

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from distillery.config import StepConfig, StudentConfig
from distillery.data.prepare import load_prepared
from distillery.data.table import read_table
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict_logits
from distillery.io import write_json
from distillery.logits.store import Logits, column, teacher_fingerprint
from distillery.losses import LOSSES
from distillery.losses.features import FeatureContext, Features
from distillery.losses.kd import NEEDS_TEACHER
from distillery.metrics import task_metric
from distillery.students import STUDENTS, save_student
from distillery.students.transformer import model_features
from distillery.teacher.train import check_seq_len, load_teacher


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
               "embed_dim": teacher_hidden, "input_names": list(tokenizer.model_input_names)}
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


def _transfer_set(step: StepConfig, train, augmented_dir, rng: np.random.Generator):
    """(frame, labels) of a step's transfer set; generated texts get label -100 (no gold label)."""
    if step.transfer_set == "augmented":
        if augmented_dir is None:
            raise DistilleryError(f"param {step.param}.transfer_set: 'augmented' needs the augment output")
        data = read_table(Path(augmented_dir) / "augmented.tsv")
        labels = np.where(data["rules"].to_numpy() == "original", data["label"].to_numpy(), -100)
    else:
        data = train
        labels = train["label"].to_numpy()
    if step.max_examples and step.max_examples < len(data):
        keep = np.sort(rng.choice(len(data), size=step.max_examples, replace=False))
        data, labels = data.iloc[keep].reset_index(drop=True), labels[keep]
    return data, labels


def _is_feature_loss(name: str) -> bool:
    return getattr(LOSSES.get(name), "kind", "") == "features"


def _schedule(opt, cfg: StudentConfig, total_steps: int):
    if cfg.optimizer != "adamw" or total_steps == 0:
        return None
    warm = int(cfg.warmup_ratio * total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(warm, 1) if s < warm else max(0.0, (total_steps - s) / max(total_steps - warm, 1)))


def distill(cfg: StudentConfig, prepared_dir: str | Path, teacher_dir: str | Path, logits_dir: str | Path,
            augmented_dir: str | Path | None, out_dir: str | Path, metrics_path: str | Path,
            live_dir: str | Path) -> dict:
    from dvclive import Live
    from transformers import AutoConfig

    steps = cfg.steps()
    for step in steps:
        for loss in step.losses:
            LOSSES.get(loss, param=f"{step.param}.losses")
    cls = STUDENTS.get(cfg.model, param=f"students.{cfg.name}.model")
    task, info, train, dev = load_prepared(prepared_dir)
    n_labels = len(info["label_names"])
    _, tokenizer, tinfo = load_teacher(teacher_dir, n_labels=n_labels)
    tcfg = AutoConfig.from_pretrained(teacher_dir)
    check_seq_len(tcfg, cfg.max_seq_len, f"students.{cfg.name}.max_seq_len")

    torch.manual_seed(cfg.seed)
    mcfg = build_student_config(cls, dict(cfg.model_args), n_labels, info["pair"], tokenizer, cfg.name,
                                tcfg.hidden_size)
    try:
        model = cls.from_teacher(mcfg, teacher_dir)
    except ValueError as e:
        raise DistilleryError(f"param students.{cfg.name}.model_args: {e}") from None

    feature_names = {k for st in steps for k, w in st.losses.items() if w > 0 and _is_feature_loss(k)}
    if feature_names and not hasattr(model, "features"):
        raise DistilleryError(f"param students.{cfg.name}.losses.{sorted(feature_names)[0]}: the {cls.family} student "
                              "has no hidden states or attention; use it with output-layer losses only")
    proj = torch.nn.ModuleDict()
    ctx = None
    if feature_names:
        mc = model.config
        if {"tinybert_embedding", "tinybert_hidden"} & feature_names and mc.hidden_size != tcfg.hidden_size:
            proj["embedding"] = torch.nn.Linear(mc.hidden_size, tcfg.hidden_size)  # W_e
            proj["hidden"] = torch.nn.Linear(mc.hidden_size, tcfg.hidden_size)  # W_h
        if "pkd" in feature_names and not mc.patient_layers:
            raise DistilleryError(f"param students.{cfg.name}.losses.pkd: the {cls.family} student names no patient "
                                  "layers; use model pkd_skip or pkd_last, or set model_args.patient_layers")
        ctx = FeatureContext(layer_map=list(mc.layer_map), patient_layers=list(mc.patient_layers or []), proj=proj)

    store = None
    fp = None
    teacher_model = None
    rng = np.random.default_rng(cfg.seed)
    pair = info["pair"]
    history = []
    t0 = time.perf_counter()
    teacher_texts = 0
    for step in steps:  # every input is there before anything (the DVCLive folder included) is written
        if step.transfer_set == "augmented" and not (augmented_dir and (Path(augmented_dir) / "augmented.tsv").is_file()):
            raise DistilleryError(f"param {step.param}.transfer_set: 'augmented' needs {augmented_dir or '--augmented'}"
                                  "/augmented.tsv; run `distillery augment` first, or use transfer_set train")
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False) as live:
        for si, step in enumerate(steps):
            last = si == len(steps) - 1
            tag = "train" if last else "intermediate"
            data, labels = _transfer_set(step, train, augmented_dir, rng)
            active = {k: w for k, w in step.losses.items() if w > 0}
            feats = {k for k in active if _is_feature_loss(k)}
            needs = set().union(*(LOSSES.get(k).needs for k in feats)) if feats else set()
            teacher_logits, teacher_cls = None, {}
            if any(k in NEEDS_TEACHER for k in active) or "cls" in needs:
                if store is None:
                    store = Logits(logits_dir)
                    fp = store.check_teacher(teacher_dir)
                ids = data["id"].tolist()
                what = f"the {step.transfer_set} transfer set"
                if any(k in NEEDS_TEACHER for k in active):
                    teacher_logits = torch.as_tensor(store.get(ids, what=what))
                    if teacher_logits.shape[1] != n_labels:
                        raise DistilleryError(f"{logits_dir}: logits have {teacher_logits.shape[1]} labels, the data {n_labels}")
                if "cls" in needs and all(column(f"cls@{layer}") in store.arrays for layer in ctx.patient_layers):
                    teacher_cls = {layer: torch.as_tensor(store.get(ids, what=what, feature=f"cls@{layer}"))
                                   for layer in ctx.patient_layers}
            alongside = bool(needs & {"hidden", "scores"}) or ("cls" in needs and not teacher_cls)
            if alongside and teacher_model is None:
                from transformers import AutoModelForSequenceClassification

                teacher_model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
                fp = fp or teacher_fingerprint(teacher_dir, cfg.max_seq_len)
            params = [p for p in model.parameters() if p.requires_grad]
            if any(k in ("tinybert_embedding", "tinybert_hidden") for k in feats):
                params += list(proj.parameters())
            if cfg.optimizer == "adamw":
                opt = torch.optim.AdamW(params, lr=step.lr, weight_decay=cfg.weight_decay)
            else:
                opt = torch.optim.Adam(params, lr=step.lr)
            texts_a, texts_b = data["text_a"].tolist(), data["text_b"].tolist()
            lengths = (data["text_a"].str.len() + data["text_b"].str.len()).to_numpy()
            n_batches = math.ceil(len(data) / step.batch_size)
            sched = _schedule(opt, cfg, n_batches * step.epochs)
            labels_t = torch.tensor(np.asarray(labels), dtype=torch.long)
            for epoch in range(step.epochs):
                model.train()
                batches = _training_batches(len(data), step.batch_size, lengths, rng)
                total, count = 0.0, 0
                desc = f"{cfg.name} {'' if last else 'intermediate '}epoch {epoch + 1}/{step.epochs}"
                bar = tqdm(batches, desc=desc, unit="batch", mininterval=2.0)
                for idx in bar:
                    batch = model.collate(tokenizer, [texts_a[i] for i in idx],
                                          [texts_b[i] for i in idx] if pair else None, cfg.max_seq_len)
                    idx_t = torch.as_tensor(idx)
                    y = labels_t[idx_t]
                    if feats:
                        s = model.features(batch, scores="scores" in needs)
                        logits = s.logits
                        if alongside:
                            with torch.no_grad():
                                t = model_features(teacher_model, batch, scores="scores" in needs)
                            t.cls = {layer: t.hidden[layer][:, 0] for layer in ctx.patient_layers}
                            teacher_texts += len(idx)
                        else:
                            t = Features(mask=batch["attention_mask"])
                        t.cls = {layer: v[idx_t] for layer, v in teacher_cls.items()} or t.cls
                    else:
                        logits = model(**batch)
                    tl = teacher_logits[idx_t] if teacher_logits is not None else None
                    loss: torch.Tensor = sum(
                        w * (LOSSES.get(k)(s, t, ctx) if k in feats else LOSSES.get(k)(logits, tl, y, step.temperature))
                        for k, w in active.items())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0 if cfg.optimizer == "adamw" else 5.0)
                    opt.step()
                    if sched is not None:
                        sched.step()
                    total += loss.item() * len(idx)
                    count += len(idx)
                    bar.set_postfix(loss=f"{total / count:.4f}")
                train_loss = total / max(count, 1)
                if not math.isfinite(train_loss):
                    raise DistilleryError(f"param {step.param}.lr: training diverged (loss {train_loss}); lower it")
                live.log_metric(f"{tag}/loss", train_loss)
                entry = {"step": tag, "epoch": epoch + 1, "loss": train_loss}
                if last:
                    dev_logits = predict_logits(model, tokenizer, dev, cfg.max_seq_len)
                    dev_metric = task_metric(task.metric, dev["label"].to_numpy(), dev_logits.argmax(-1))
                    live.log_metric(f"dev/{task.metric}", dev_metric)
                    entry[f"dev_{task.metric}"] = dev_metric
                    print(f"{cfg.name} epoch {epoch + 1}: loss {train_loss:.4f}, dev {task.metric} {dev_metric:.4f}")
                else:
                    print(f"{cfg.name} intermediate epoch {epoch + 1}: loss {train_loss:.4f}")
                live.next_step()
                history.append(entry)
    metrics = {
        "student": cfg.name,
        "model": cfg.model,
        f"dev_{task.metric}": history[-1][f"dev_{task.metric}"],
        "train_seconds": round(time.perf_counter() - t0, 1),
        "transfer_examples": len(data),
        "teacher_forward_texts": teacher_texts,
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
