"""Issue 31: the user's own data through the real DAG (`dvc repro` on tiny params, in a copy of the repo): a
tiny 5-class CSV (TREC's coarse questions without ABBR) and a tiny regression TSV (STS-B pairs and scores under
column names of our own), each with a BiLSTM, a PKD student and (classification) FastBERT; then, for the
regression, the refusals of a loss on class probabilities and of FastBERT, as the stage command answers them."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from distillery.losses import LOSSES
from distillery.losses.base import STUDENT_PARTS
from distillery.students import STUDENTS
from tests.conftest import GLUE, REPO, SHARED_DATA, make_tiny_teacher
from tests.export.test_onnx import check_card
from tests.integration.test_dvc_repro import copy_repo, git_commit, sh

pytestmark = pytest.mark.integration


def five_class_csv(folder):
    trec = SHARED_DATA / "text-classification" / "trec"
    for split, src, n in (("train", "train.csv", 240), ("dev", "test.csv", 80)):
        frame = pd.read_csv(trec / src)
        frame = frame[frame["coarse_label"] != "ABBR"].head(n)
        frame.rename(columns={"text": "question", "coarse_label": "kind"})[["question", "kind"]].to_csv(
            folder / f"{split}.csv", index=False)  # pandas quotes what needs quoting
    return {"task": "questions", "data_dir": str(folder), "train_file": "train.csv", "dev_file": "dev.csv",
            "text_column": "question", "label_column": "kind", "metrics": ["macro_f1", "accuracy"]}


def regression_tsv(folder):
    for split, n in (("train", 240), ("dev", 80)):
        frame = pd.read_csv(GLUE / "STS-B" / f"{split}.tsv", sep="\t", quoting=3).head(n)
        frame.rename(columns={"sentence1": "left", "sentence2": "right", "score": "similarity"})[
            ["left", "right", "similarity"]].to_csv(folder / f"{split}.tsv", sep="\t", index=False, quoting=3)
    return {"task": "similarity", "data_dir": str(folder), "train_file": "train.tsv", "dev_file": "dev.tsv",
            "text_column": "left", "text_pair_column": "right", "label_column": "similarity",
            "problem": "regression"}


@pytest.mark.parametrize("make,n_classes,metric", [(five_class_csv, 5, "macro_f1"), (regression_tsv, 1, "pearson")])
def test_own_data_through_dvc_repro(tmp_path, make, n_classes, metric):
    repo = tmp_path / "repo"
    copy_repo(repo)
    (tmp_path / "data").mkdir()
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"] = {**make(tmp_path / "data"), "max_train": 0, "max_dev": 0, "seed": 0, "duplicates": "majority"}
    params["teacher"].update(base_model=str(make_tiny_teacher(tmp_path / "tiny_teacher", layers=4)), bf16=False,
                             lr=1e-3, logging_steps=5)
    params["augment"].update(n_iter=2)
    params["soft_labels"].update(features=["cls@2"])
    regression = n_classes == 1
    kd = {"mse_logits": 0.5, "mse": 0.5} if regression else {"soft_ce": 0.5, "ce": 0.5}
    params["students"] = {
        "bilstm_kd": {"model": "bilstm", "losses": {"mse_logits": 1.0}, "epochs": 1,
                      "model_args": {"hidden_size": 16, "mlp_size": 16}},
        "pkd_skip": {"model": "pkd_skip", "transfer_set": "train", "losses": {**kd, "pkd": 10.0},
                     "model_args": {"num_layers": 2}},
        **({} if regression else {"fastbert": {"model": "fastbert", "losses": {"self_distill": 1.0}}}),
    }
    params["evaluate"].update(repeats=2, warmup=1, exit_speeds=[0.5], exit_repeats=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git_commit(repo, "own data")

    out = sh([sys.executable, "-m", "dvc", "repro"], repo)
    assert f"| model | family | params (M) | {metric} | retention |" in out
    task = json.loads((repo / "data/prepared/task.json").read_text())
    assert len(task["label_names"]) == n_classes and task["problem"] == ("regression" if regression else "classification")
    summary = json.loads((repo / "metrics/eval/summary.json").read_text())
    assert summary["metric"] == metric and set(summary) - {"task", "metric", "rows", "pick"} == {"teacher"} | set(params["students"])
    for name in params["students"]:
        assert -1 <= summary[name][metric] <= 1 and summary[name]["latency_bs1_ms"] > 0
        export = json.loads((repo / "exports" / name / "export.json").read_text())
        assert export["onnx_agreement"] >= 0.999 and export["int8_mb"] > 0  # an int8 graph (FastBERT: one per layer)
        head = check_card(repo / "exports" / name)
        assert metric in head["metrics"]
    teacher = json.loads((repo / "models/teacher/config.json").read_text())
    assert len(teacher["id2label"]) == n_classes
    manifest = json.loads((repo / "data/logits/manifest.json").read_text())
    assert manifest["label_names"] == task["label_names"]
    if not regression:
        assert sorted(teacher["id2label"].values()) == ["DESC", "ENTY", "HUM", "LOC", "NUM"]
        assert "spearman" not in summary["teacher"] and "accuracy" in summary["teacher"]
        assert (repo / "metrics/eval/exits.csv").read_text().count("fastbert") >= 1
        return
    assert teacher["problem_type"] == "regression" and "spearman" in summary["teacher"]
    table = (repo / "metrics/eval/table.md").read_text()
    assert "| pearson | retention | spearman |" in table and "Pearson r with PyTorch" in table
    siamese = json.loads((repo / "exports/bilstm_kd/export.json").read_text())
    assert siamese["int8_agreement"] > 0.95  # the shared LSTM stays fp32 in the int8 graph (quantised per tensor: ~0.6)
    assert "a regression: one output, the predicted similarity" in (repo / "exports/pkd_skip/README.md").read_text()

    params["students"] |= {"bert_soft": {"model": "bert", "losses": {"soft_ce": 1.0}, "model_args": {"num_layers": 1}},
                           "fastbert": {"model": "fastbert", "losses": {"self_distill": 1.0}}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def stage(*args):
        return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=repo, capture_output=True, text=True,
                              env=env)

    r = stage("distill", "--name", "bert_soft")
    provides = STUDENTS.get("bert").provides  # losses for insides the student has (not a seq2seq student's tokens)
    fits = ", ".join(sorted(n for n in LOSSES if not LOSSES.get(n).probabilities
                            and not (LOSSES.get(n).needs & STUDENT_PARTS) - provides))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: param students.bert_soft.losses.soft_ce: needs class probabilities, and task similarity is a "
        f"regression (one output); use {fits}"]
    r = stage("distill", "--name", "fastbert")
    assert r.returncode == 2 and "param students.fastbert.model: the fastbert student cannot learn a regression" in r.stderr
    assert not (repo / "models/students/bert_soft").exists() and not (repo / "models/students/fastbert").exists()
