"""The `prepare` stage: a GLUE folder or HF dataset -> data/prepared/{train,dev}.tsv + task.json."""

from pathlib import Path

import numpy as np
import pandas as pd

from distillery.config import PrepareConfig
from distillery.data.glue import read_glue_tsv, read_hf_split
from distillery.data.table import read_table, write_table
from distillery.data.tasks import TaskSpec, get_task
from distillery.errors import DistilleryError
from distillery.io import atomic_dir, read_json, write_json


def _subsample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n == 0 or n >= len(frame):
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def prepare(cfg: PrepareConfig, out_dir: str | Path) -> dict:
    """Read, validate and subsample the train and dev splits; write them with stable ids."""
    task = get_task(cfg.task)
    if cfg.data_dir:
        src = Path(cfg.data_dir)
        if not src.is_dir():
            raise DistilleryError(f"param prepare.data_dir: {src} is not a folder; point it at a GLUE task folder")
        train = read_glue_tsv(src / "train.tsv", task)
        dev = read_glue_tsv(src / "dev.tsv", task)
        source = str(src)
    else:
        name = cfg.hf_dataset
        train = read_hf_split(name, cfg.hf_config or task.hf_config, "train", task)
        dev = read_hf_split(name, cfg.hf_config or task.hf_config, "validation", task)
        source = f"hf:{name}/{cfg.hf_config or task.hf_config}"
    train = _subsample(train, cfg.max_train, cfg.seed)
    dev = _subsample(dev, cfg.max_dev, cfg.seed)
    info = {
        "task": task.name,
        "label_names": list(task.label_names),
        "metric": task.metric,
        "pair": task.is_pair,
        "n_train": len(train),
        "n_dev": len(dev),
        "source": source,
    }
    with atomic_dir(out_dir) as tmp:
        write_table(train, tmp / "train.tsv")
        write_table(dev, tmp / "dev.tsv")
        write_json(tmp / "task.json", info)
    return info


def load_prepared(prepared_dir: str | Path) -> tuple[TaskSpec, dict, pd.DataFrame, pd.DataFrame]:
    """Read what `prepare` wrote: (task spec, task.json, train, dev)."""
    d = Path(prepared_dir)
    info_path = d / "task.json"
    if not info_path.is_file():
        raise DistilleryError(f"{info_path}: missing; run `distillery prepare` (or dvc repro) first")
    info = read_json(info_path)
    task = get_task(info["task"], param=f"{info_path}:task")
    train, dev = read_table(d / "train.tsv"), read_table(d / "dev.tsv")
    n = len(info["label_names"])
    for split, frame in (("train", train), ("dev", dev)):
        bad = frame.index[(frame["label"] < 0) | (frame["label"] >= n)]
        if len(bad):
            raise DistilleryError(
                f"{d / (split + '.tsv')}:{bad[0] + 2}: label {frame['label'][bad[0]]} outside 0..{n - 1}; re-run prepare"
            )
    return task, info, train, dev
