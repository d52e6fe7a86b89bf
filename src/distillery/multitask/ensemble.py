"""An ensemble's soft targets: the mean of its members' probabilities (not of their logits).

MT-DNN KD (Liu et al. 2019, sec. 3): for each task, K teachers fine-tuned with different seeds and
dropout; the soft target of example x is  p(x) = 1/K * sum_k softmax(z_k(x)).  Each member's logits
stay in its own soft-labels artifact (`data/logits/<member>`), so adding a member labels texts with
that member only; this stage re-averages. The output is a logits artifact like a teacher's, holding
log p (so softmax of what it stores is p again, and every logit loss reads it unchanged) for the
task's train and dev texts, and naming its members' fingerprints.
"""

import hashlib
from pathlib import Path

import numpy as np

from distillery.config import MemberConfig
from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.io import read_json, write_metrics
from distillery.logits.artifact import MANIFEST, Logits, write_logits
from distillery.metrics import task_metric

FLOOR = 1e-12  # log of a probability that rounds to 0 in float64


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def mean_probs(member_logits: list[np.ndarray]) -> np.ndarray:
    """(n, c) mean over members of softmax(logits): MT-DNN's ensemble average."""
    if not member_logits:
        raise ValueError("an ensemble needs at least one member")
    return np.mean([softmax(z) for z in member_logits], axis=0)


def ensemble_fingerprint(fingerprints: list[str]) -> str:
    """Names the ensemble by its members (order-free): a student refuses targets of another ensemble."""
    return hashlib.sha256("\n".join(sorted(fingerprints)).encode()).hexdigest()[:16]


def build_ensemble(members: list[MemberConfig], prepared_dir: str | Path, teachers_dir: str | Path,
                   logits_dir: str | Path, out_dir: str | Path, metrics_path: str | Path) -> dict:
    """Average the stored logits of the prepared task's members into `out_dir` (`soft-labels --ensemble-of`); dev
    metric of each member and of the ensemble into `metrics_path`. A task with no member gets an empty artifact
    (gold labels only)."""
    prep = load_prepared(prepared_dir)
    task = prep.task.name
    if prep.task.regression:
        raise DistilleryError(f"{Path(prepared_dir) / 'task.json'}: {task} is a regression; the ensembles of this "
                              "study average class logits, so leave it out of the study's tasks")
    mine = [m for m in members if m.task == task]
    ids = prep.train["id"].tolist() + prep.dev["id"].tolist()
    dev_ids = prep.dev["id"].tolist()
    y_dev = prep.dev["label"].to_numpy()
    metric = prep.task.metric
    stored, report = [], []
    for m in mine:
        art = Logits(Path(logits_dir) / m.name)
        where = art.path / MANIFEST
        fp = art.check_teacher(Path(teachers_dir) / m.name)
        if art.manifest.get("task") != task or list(art.manifest.get("label_names", [])) != prep.label_names:
            raise DistilleryError(f"{where}: logits for task {art.manifest.get('task')} "
                                  f"{art.manifest.get('label_names')}, but member {m.name} is a {task} teacher "
                                  f"{prep.label_names}; re-run its soft-labels stage")
        z = art.get(ids, f"{task} train + dev")
        stored.append(z)
        dev_pred = z[len(ids) - len(dev_ids):].argmax(-1)
        report.append({"member": m.name, "fingerprint": fp, "seed": m.seed, "dropout": m.dropout, "epochs": m.epochs,
                       f"dev_{metric}": task_metric(metric, y_dev, dev_pred)})
    meta = {"kind": "ensemble", "task": task, "label_names": prep.label_names,
            "members": [{"name": r["member"], "fingerprint": r["fingerprint"]} for r in report],
            "fingerprint": ensemble_fingerprint([r["fingerprint"] for r in report]) if report else "",
            "max_seq_len": max((int(read_json(Path(logits_dir) / m.name / MANIFEST).get("max_seq_len", 0))
                                for m in mine), default=0)}
    if stored:
        p = mean_probs(stored)
        write_logits(out_dir, ids, {"logits": np.log(np.maximum(p, FLOOR))}, meta, kind="ensemble")
        ens_dev = task_metric(metric, y_dev, p[len(ids) - len(dev_ids):].argmax(-1))
    else:
        write_logits(out_dir, [], {"logits": np.zeros((0, prep.num_labels))}, meta, kind="ensemble")
        ens_dev = None
    metrics = {"task": task, "metric": metric, "members": report, f"ensemble_dev_{metric}": ens_dev,
               f"mean_member_dev_{metric}": float(np.mean([r[f"dev_{metric}"] for r in report])) if report else None}
    write_metrics(metrics_path, metrics, "ensemble", written=out_dir)
    return metrics


class Targets:
    """A task's ensemble artifact, opened by a student: soft targets (log-probabilities) by id, or none."""

    def __init__(self, ensemble_dir: str | Path, task: str, label_names: list[str]) -> None:
        d = Path(ensemble_dir)
        if not (d / MANIFEST).is_file():
            raise DistilleryError(f"{d / MANIFEST}: missing; run `distillery soft-labels --ensemble-of` for task {task} "
                                  "(or dvc repro) first")
        self.art = Logits(d)
        man = self.art.manifest
        if man.get("kind") != "ensemble" or man.get("task") != task or list(man.get("label_names", [])) != label_names:
            raise DistilleryError(f"{d / MANIFEST}: not the ensemble of task {task} {label_names} (it says "
                                  f"{man.get('kind')} {man.get('task')} {man.get('label_names')}); "
                                  "re-run the ensemble stage")
        self.members = [m["name"] for m in man.get("members", [])]
        self.fingerprint = man.get("fingerprint", "")

    @property
    def has_teacher(self) -> bool:
        return bool(self.members)

    def get(self, ids: list[str], what: str) -> np.ndarray:
        return self.art.get(ids, what)
