"""The `soft-labels` stage: teacher logits for train + augmented + dev texts, via the store."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.config import SoftLabelConfig
from distillery.data.prepare import load_prepared
from distillery.data.table import read_table
from distillery.io import write_metrics
from distillery.dist import finish, init_world
from distillery.logits.arrays import parse_features
from distillery.logits.artifact import write_logits
from distillery.logits.fingerprint import teacher_fingerprint
from distillery.logits.label import label_texts
from distillery.logits.store import LogitStore
from distillery.hardware import precision
from distillery.teacher.models import weights_file
from distillery.teacher.train import check_seq_len, load_teacher


def soft_labels(cfg: SoftLabelConfig, teacher_dir: str | Path, prepared_dir: str | Path,
                augmented_dir: str | Path | None, out_dir: str | Path, store_dir: str | Path,
                metrics_path: str | Path) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    prep = load_prepared(prepared_dir)
    train, dev = prep.train, prep.dev
    model, tokenizer, _ = load_teacher(teacher_dir, n_labels=prep.num_labels)
    world = init_world()
    model.to(world.device)  # a GPU where there is one (bf16 autocast where it supports it)
    frames = [train, dev]
    if augmented_dir is not None:
        frames.append(read_table(Path(augmented_dir) / "augmented.tsv", score=prep.task.regression))
    texts = pd.concat([f[["id", "text_a", "text_b"]] for f in frames]).drop_duplicates("id")
    check_seq_len(model.config, cfg.max_seq_len, "soft_labels.max_seq_len")
    fp = teacher_fingerprint(teacher_dir, cfg.max_seq_len)
    parse_features(cfg.features, model.config.num_hidden_layers)  # fail before any work
    prec = precision(cfg.bf16, next(model.parameters()).device.type)
    store = LogitStore(store_dir, fp, model.config.num_labels, cfg.features, prec)
    world.barrier()  # every process plans from the same store state before anyone writes to it
    t0 = time.perf_counter()
    stats = label_texts(model, tokenizer, texts["id"].tolist(), texts["text_a"].tolist(),
                        texts["text_b"].tolist() if prep.task.is_pair else None, store,
                        cfg.max_seq_len, cfg.batch_tokens, prec == "bf16", checkpoint_every=cfg.checkpoint_every,
                        rank=world.rank, world_size=world.size, features=cfg.features,
                        where=str(weights_file(teacher_dir)))
    world.barrier()  # every process has written its parts
    discarded = len(store.discarded)
    if not world.is_main:
        finish(world)
        return {"rank": world.rank, **stats}
    if world.size > 1:
        store = LogitStore(store_dir, fp, model.config.num_labels, cfg.features, prec)  # merge the other processes' parts
    ids = texts["id"].tolist()
    keys = np.array([int(i, 16) for i in ids], dtype=np.uint64)
    write_logits(out_dir, ids, store.get_all(keys), {
        "fingerprint": fp,
        "teacher": str(teacher_dir),
        "task": prep.task.name,
        "label_names": prep.label_names,
        "max_seq_len": cfg.max_seq_len,
        "precision": prec,  # what the teacher ran in (bf16 only where the hardware supports it)
    }, features=cfg.features)
    metrics = {"texts": len(ids), **stats, "precision": prec, "damaged_parts_relabelled": discarded,
               "processes": world.size, "seconds": round(time.perf_counter() - t0, 2)}
    write_metrics(metrics_path, metrics, "soft-labels", written=out_dir)
    finish(world)
    return metrics
