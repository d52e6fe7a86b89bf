"""The `prepare` stage: files (a GLUE preset's or your own) or a HF dataset -> data/prepared/{train,dev}.tsv + task.json."""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from distillery.config import PrepareConfig
from distillery.data.glue import merge_duplicates
from distillery.data.table import read_table, write_table
from distillery.data.tasks import DEFAULT_METRICS, TaskSpec, check_preset, preset_params
from distillery.errors import DistilleryError
from distillery.io import atomic_dir, read_json, write_json, write_metrics


def _subsample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n == 0 or n >= len(frame):
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def carve_dev(train: pd.DataFrame, share: float, seed: int, regression: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded, stratified dev split set aside from `train`: `share` of its distinct texts from each label (a
    regression: from each tenth of the scores), at least one text of a label that has two, every row of a chosen
    text with it (so no text is in both). Returns (train, dev), each in file order."""
    first = train.drop_duplicates("id")
    strata = first["label"].to_numpy()
    if regression:  # deciles of the scores
        edges = np.quantile(strata, np.linspace(0, 1, 11)[1:-1])
        strata = np.searchsorted(edges, strata, side="right")
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(strata):
        ids = first["id"].to_numpy()[strata == value]
        n = int(round(share * len(ids)))
        if n == 0 and len(ids) >= 2:
            n = 1
        if n:
            chosen.extend(rng.choice(ids, size=n, replace=False).tolist())
    in_dev = train["id"].isin(set(chosen))
    return train[~in_dev].reset_index(drop=True), train[in_dev].reset_index(drop=True)


def read_splits(cfg: PrepareConfig) -> tuple[TaskSpec, dict[str, pd.DataFrame], str, dict[str, str]]:
    """Every split read and validated (files under prepare.data_dir, or a dataset's splits), the labels from
    training (or prepare.labels), the task built from them; dev carved from train where none is named. Returns
    (task, {train, dev[, test]}, source, where each split came from)."""
    from distillery.data.files import cell, label_order, read_hf, read_split, with_ids

    cols = (cfg.text_column, cfg.text_pair_column, cfg.label_column)
    if cfg.hf_dataset:
        splits = {r: s for r, s in (("train", cfg.train_split), ("dev", cfg.dev_split), ("test", cfg.test_split)) if s}
        raw = {role: read_hf(cfg.hf_dataset, cfg.hf_config, s, *cols) for role, s in splits.items()}
        where = {role: f"dataset {cfg.hf_dataset} split {s}" for role, s in splits.items()}
        source = f"hf:{cfg.hf_dataset}" + (f":{cfg.hf_config}" if cfg.hf_config else "")
    else:
        folder = Path(cfg.data_dir or "")  # the files are named relative to prepare.data_dir, if given
        if cfg.data_dir and not folder.is_dir():
            raise DistilleryError(f"param prepare.data_dir: {folder} is not a folder; point it at the folder that "
                                  "holds prepare.train_file and prepare.dev_file (a GLUE task folder for a preset)")
        paths = {s: folder / f for s, f in (("train", cfg.train_file), ("dev", cfg.dev_file), ("test", cfg.test_file))
                 if f}
        raw = {s: read_split(p, cfg.format, cfg.delimiter, *cols, columns=cfg.columns) for s, p in paths.items()}
        where = {s: str(p) for s, p in paths.items()}
        source = str(folder) if preset_params(cfg.task, "files") and cfg.data_dir else f"file:{paths['train']}"
    fixed = tuple(cell(x, 'param prepare.labels', 'labels', True) for x in cfg.labels) if cfg.labels else None
    regression = cfg.problem == "regression"  # a preset or the user's param; classification unless set
    labels = None if regression else label_order(raw["train"], where["train"], fixed)
    frames = {s: with_ids(raw[s], labels, where[s], fixed=bool(fixed)) for s in raw}
    if regression and frames["train"]["label"].nunique() < 2:
        raise DistilleryError(f"{where['train']}: every score in column {cfg.label_column!r} is the same; "
                              "a regression needs them to vary")
    if "dev" not in frames:
        frames["train"], frames["dev"] = carve_dev(frames["train"], cfg.dev_share, cfg.seed, regression)
        where["dev"] = (f"{where['train']} (a seeded, stratified {cfg.dev_share:.0%} of its texts, set aside: "
                        f"prepare.dev_share, prepare.seed {cfg.seed})")
        if frames["dev"].empty or frames["train"].empty:
            raise DistilleryError(f"{where['train']}: too few texts to set a dev split aside; name a "
                                  "prepare.dev_file or give more training rows")
    names = (cfg.label_column,) if regression else tuple(cfg.label_names or labels)
    name = check_preset(cfg.task) if preset_params(cfg.task, "files") else cfg.task
    task = TaskSpec(name, names, bool(cfg.text_pair_column), tuple(cfg.metrics or DEFAULT_METRICS[cfg.problem]),
                    cfg.problem)
    return task, frames, source, where


def prepare(cfg: PrepareConfig, out_dir: str | Path, metrics_path: str | Path | None = None) -> dict:
    """Read, validate and subsample the splits; write them with stable ids.

    Dev (and test) keep every row in file order (scored whole, as GLUE scores them); train has one row per
    distinct text, with conflicting labels settled by `cfg.duplicates`. Counts go to `metrics_path`
    and, for conflicts, to stderr."""
    task, frames, source, where = read_splits(cfg)
    train, dev, test = frames["train"], frames["dev"], frames.get("test")
    n_read = {s: len(f) for s, f in frames.items()}
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
    if test is not None:
        counts["test"] = {"rows_read": n_read["test"], "rows_kept": len(test), "distinct_texts": int(test["id"].nunique())}
    info = {
        "task": task.name,
        "problem": task.problem,
        "label_names": list(task.label_names),
        "labels_from": ("a regression: one output" if task.regression else
                        "prepare.labels" if cfg.labels else "the training split (sorted)"),
        "columns": {"text": cfg.text_column, "text_pair": cfg.text_pair_column, "label": cfg.label_column},
        "metric": task.metric,
        "metrics": list(task.metrics),
        "pair": task.is_pair,
        "n_train": len(train),
        "n_dev": len(dev),
        **({"n_test": len(test)} if test is not None else {}),
        "source": source,
        "files": where,  # where each split came from, as params name it (dev: carved from train, when it was)
        "counts": counts,
    }
    with atomic_dir(out_dir, "prepare") as tmp:
        write_table(train, tmp / "train.tsv")
        write_table(dev, tmp / "dev.tsv")
        if test is not None:
            write_table(test, tmp / "test.tsv")
        write_json(tmp / "task.json", info)
    if metrics_path is not None:
        write_metrics(metrics_path, {"task": task.name, **counts}, "prepare", written=out_dir)
    return info


@dataclass(frozen=True)
class Prepared:
    """What `prepare` wrote, read back: the task (labels, metric, pair or not), the splits (test: None where the
    params named none), and task.json's record of where they came from (`source`, `files`, `counts`)."""

    task: TaskSpec
    train: pd.DataFrame
    dev: pd.DataFrame
    source: str
    counts: dict
    test: pd.DataFrame | None = None
    files: dict | None = None

    @property
    def label_names(self) -> list[str]:
        return list(self.task.label_names)

    @property
    def num_labels(self) -> int:
        return len(self.task.label_names)

    def split_file(self, split: str) -> str:
        """Where a split came from, as the params named it (its prepared file where task.json does not say)."""
        return (self.files or {}).get(split) or f"{split}.tsv"


def load_prepared(prepared_dir: str | Path) -> Prepared:
    """Read and check what `prepare` wrote."""
    d = Path(prepared_dir)
    info_path = d / "task.json"
    if not info_path.is_file():
        raise DistilleryError(f"{info_path}: missing; run `distillery prepare` (or dvc repro) first")
    info = read_json(info_path)
    try:
        task = TaskSpec(str(info["task"]), tuple(info["label_names"]), bool(info["pair"]),
                        tuple(info.get("metrics") or [info["metric"]]), info.get("problem", "classification"))
    except (KeyError, TypeError, ValueError, DistilleryError) as e:
        raise DistilleryError(f"{info_path}: not a task.json this version wrote ({e}); re-run prepare") from None
    splits = {s: read_table(d / f"{s}.tsv", score=task.regression) for s in ("train", "dev", "test")
              if s != "test" or (d / "test.tsv").is_file()}
    n = len(task.label_names)
    for split, frame in splits.items():
        bad = frame.index[~np.isfinite(frame["label"])] if task.regression else \
            frame.index[(frame["label"] < 0) | (frame["label"] >= n)]
        if len(bad):
            raise DistilleryError(f"{d / (split + '.tsv')}:{bad[0] + 2}: label {frame['label'][bad[0]]} "
                                  f"{'is not finite' if task.regression else f'outside 0..{n - 1}'}; re-run prepare")
    return Prepared(task, splits["train"], splits["dev"], str(info.get("source", "")), info.get("counts", {}),
                    splits.get("test"), info.get("files") if isinstance(info.get("files"), dict) else None)
