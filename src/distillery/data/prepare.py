"""The `prepare` stage: a GLUE folder or HF dataset -> data/prepared/{train,dev}.tsv + task.json."""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillery.config import PrepareConfig
from distillery.data.glue import merge_duplicates, read_glue_tsv, read_hf_split
from distillery.data.table import read_table, write_table
from distillery.data.tasks import TaskSpec, get_task, own_task
from distillery.errors import DistilleryError
from distillery.io import atomic_dir, read_json, write_json


def _subsample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n == 0 or n >= len(frame):
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def read_own(cfg: PrepareConfig) -> tuple[TaskSpec, pd.DataFrame, pd.DataFrame, str]:
    """The user's own files (module `files`): both splits read and validated, labels from training (or
    prepare.labels), the task built from them."""
    from distillery.data.files import label_order, read_split, with_ids

    folder = Path(cfg.data_dir or "")  # the files are named relative to prepare.data_dir, if given
    if cfg.data_dir and not folder.is_dir():
        raise DistilleryError(f"param prepare.data_dir: {folder} is not a folder; point it at the folder that holds "
                              "prepare.train_file and prepare.dev_file")
    paths = {s: folder / f for s, f in (("train", cfg.train_file), ("dev", cfg.dev_file))}
    raw = {s: read_split(p, cfg.format, cfg.delimiter, cfg.text_column, cfg.text_pair_column, cfg.label_column)
           for s, p in paths.items()}
    labels = label_order(raw["train"], paths["train"], tuple(str(x) for x in cfg.labels) if cfg.labels else None)
    task = own_task(cfg.task, labels, bool(cfg.text_pair_column), cfg.metric or "accuracy")
    frames = {s: with_ids(raw[s], labels, paths[s]) for s in raw}
    return task, frames["train"], frames["dev"], f"file:{paths['train']}"


def prepare(cfg: PrepareConfig, out_dir: str | Path, metrics_path: str | Path | None = None) -> dict:
    """Read, validate and subsample the train and dev splits; write them with stable ids.

    Dev keeps every row in file order (it is scored whole, as GLUE scores it); train has one row per
    distinct text, with conflicting labels settled by `cfg.duplicates`. Counts go to `metrics_path`
    and, for conflicts, to stderr."""
    if cfg.train_file:
        task, train, dev, source = read_own(cfg)
    elif cfg.data_dir:
        task = get_task(cfg.task)
        src = Path(cfg.data_dir)
        if not src.is_dir():
            raise DistilleryError(f"param prepare.data_dir: {src} is not a folder; point it at a GLUE task folder")
        train = read_glue_tsv(src / "train.tsv", task)
        dev = read_glue_tsv(src / "dev.tsv", task)
        source = str(src)
    else:
        task = get_task(cfg.task)
        name = cfg.hf_dataset
        train = read_hf_split(name, cfg.hf_config or task.hf_config, "train", task)
        dev = read_hf_split(name, cfg.hf_config or task.hf_config, "validation", task)
        source = f"hf:{name}/{cfg.hf_config or task.hf_config}"
    n_read = {"train": len(train), "dev": len(dev)}
    train, merged = merge_duplicates(train, cfg.duplicates)
    if merged["conflicting_texts"]:
        print(f"prepare: {merged['conflicting_texts']} training texts appear with different labels "
              f"({merged['conflicting_rows']} rows); kept labels {merged['conflict_labels_kept']} by rule "
              f"prepare.duplicates={cfg.duplicates}", file=sys.stderr)
    train = _subsample(train, cfg.max_train, cfg.seed)
    dev = _subsample(dev, cfg.max_dev, cfg.seed)
    counts = {
        "train": {**merged, "rows_kept": len(train)},
        "dev": {"rows_read": n_read["dev"], "rows_kept": len(dev), "distinct_texts": int(dev["id"].nunique())},
    }
    info = {
        **({"own": {"pair": task.is_pair, "columns": [cfg.text_column, cfg.text_pair_column, cfg.label_column],
                    "labels_from": "prepare.labels" if cfg.labels else "the training split (sorted)"}}
           if cfg.train_file else {}),
        "task": task.name,
        "label_names": list(task.label_names),
        "metric": task.metric,
        "pair": task.is_pair,
        "n_train": len(train),
        "n_dev": len(dev),
        "source": source,
        "counts": counts,
    }
    with atomic_dir(out_dir, "prepare") as tmp:
        write_table(train, tmp / "train.tsv")
        write_table(dev, tmp / "dev.tsv")
        write_json(tmp / "task.json", info)
    if metrics_path is not None:
        write_json(metrics_path, {"task": task.name, **counts})
    return info


@dataclass(frozen=True)
class Prepared:
    """What `prepare` wrote, read back: the task (labels, metric, pair or not), both splits, and
    task.json's record of where they came from (`source`, `counts`)."""

    task: TaskSpec
    train: pd.DataFrame
    dev: pd.DataFrame
    source: str
    counts: dict

    @property
    def label_names(self) -> list[str]:
        return list(self.task.label_names)

    @property
    def num_labels(self) -> int:
        return len(self.task.label_names)


def load_prepared(prepared_dir: str | Path) -> Prepared:
    """Read and check what `prepare` wrote."""
    d = Path(prepared_dir)
    info_path = d / "task.json"
    if not info_path.is_file():
        raise DistilleryError(f"{info_path}: missing; run `distillery prepare` (or dvc repro) first")
    info = read_json(info_path)
    if "own" in info:  # the user's own data: the task is what task.json says
        task = own_task(info["task"], list(info["label_names"]), bool(info["own"]["pair"]), info["metric"])
    else:
        task = get_task(info["task"], param=f"{info_path}:task")
    train, dev = read_table(d / "train.tsv"), read_table(d / "dev.tsv")
    n = len(task.label_names)
    for split, frame in (("train", train), ("dev", dev)):
        bad = frame.index[(frame["label"] < 0) | (frame["label"] >= n)]
        if len(bad):
            raise DistilleryError(
                f"{d / (split + '.tsv')}:{bad[0] + 2}: label {frame['label'][bad[0]]} outside 0..{n - 1}; re-run prepare"
            )
    return Prepared(task, train, dev, str(info.get("source", "")), info.get("counts", {}))
