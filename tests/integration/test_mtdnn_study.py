"""Runs the MT-DNN KD study's real DAG (studies/mtdnn/dvc.yaml) with `dvc repro` on a tiny params file, in a
temporary copy of the repo: two tasks (SST-2 with a two-member ensemble, RTE with no teacher), tiny models.
Then adds an RTE member and checks that only what depends on it re-runs."""

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import GLUE, REPO, make_tiny_teacher

pytestmark = pytest.mark.integration
DVC = [sys.executable, "-m", "dvc"]


def sh(args, cwd):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage 'studies/mtdnn/dvc\.yaml:([^']+)'", log))


def test_mtdnn_study_tiny(tmp_path):
    repo = tmp_path / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file() and not f.startswith(("metrics/", "dvclive/", "dvc.lock", "studies/mtdnn/metrics/",
                                                       "studies/mtdnn/dvc.lock")):
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, repo / f)
    base = make_tiny_teacher(tmp_path / "tiny_base", layers=2)
    study = repo / "studies" / "mtdnn"
    p = yaml.safe_load((study / "params.yaml").read_text())
    p["tasks"] = {"sst2": {**p["tasks"]["sst2"], "data_dir": str(GLUE / "SST-2"), "max_train": 96, "max_dev": 40},
                  "rte": {**p["tasks"]["rte"], "data_dir": str(GLUE / "RTE"), "max_train": 64, "max_dev": 30}}
    p["teacher"].update(base_model=str(base), bf16=False, lr=1e-3, max_seq_len=64, logging_steps=5)
    p["members"] = {"sst2-a": {"task": "sst2", "seed": 0, "dropout": 0.1, "epochs": 1},
                    "sst2-b": {"task": "sst2", "seed": 1, "dropout": 0.2, "epochs": 2}}
    p["soft_labels"].update(max_seq_len=64, bf16=False)
    p["distill"]["common"].update(max_seq_len=64, lr=1e-3)
    p["distill"]["mtdnn"]["model_args"].update(base_model=str(base), num_layers=1)
    p["students"] = {"mtdnn_kd": {**p["students"]["mtdnn_kd"], "tasks": ["sst2", "rte"]}}  # mtdnn_gold: the same path
    p["evaluate"].update(latency_texts=3, warmup=1)
    (study / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    sh(["git", "init", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"], repo)

    first = sh(DVC + ["repro", "studies/mtdnn/dvc.yaml"], repo)
    assert {"teacher@sst2-a", "teacher@sst2-b", "ensemble@rte", "single@rte", "distill@mtdnn_kd",
            "export@mtdnn_kd", "evaluate"} <= ran(first)
    table = (study / "metrics/eval/table.md").read_text()
    for row in ("| teacher (first member) |", "| ensemble (K=2) |", "| single-task students (KD) |", "| mtdnn_kd | pytorch |",
                "| mtdnn_kd | onnx |", "sst2 acc | rte acc | average"):
        assert row in table, table
    ens = json.loads((study / "metrics/ensemble/rte.json").read_text())
    assert ens["members"] == [] and ens["ensemble_dev_accuracy"] is None  # RTE: no teacher
    kd = json.loads((study / "models/students/mtdnn_kd/student.json").read_text())
    assert kd["tasks"]["rte"]["losses"] == {"ce": 1.0} and kd["tasks"]["sst2"]["losses"] == {"ce": 0.5, "soft_ce": 0.5}
    tasks = json.loads((study / "exports/mtdnn_kd/tasks.json").read_text())
    assert set(tasks["tasks"]) == {"sst2", "rte"}
    assert "up to date" in sh(DVC + ["repro", "studies/mtdnn/dvc.yaml"], repo)  # cached: nothing re-runs

    # an RTE member: its teacher and logits run, RTE's students re-run; SST-2's single-task student does not
    p["members"]["rte-a"] = {"task": "rte", "seed": 0, "dropout": 0.1, "epochs": 1}
    (study / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    second = ran(sh(DVC + ["repro", "studies/mtdnn/dvc.yaml"], repo))
    assert {"teacher@rte-a", "soft-labels@rte-a", "single@rte", "distill@mtdnn_kd", "evaluate"} <= second
    assert not second & {"teacher@sst2-a", "teacher@sst2-b", "soft-labels@sst2-a", "single@sst2", "prepare@sst2"}
    kd = json.loads((study / "models/students/mtdnn_kd/student.json").read_text())
    assert kd["tasks"]["rte"]["losses"] == {"ce": 0.5, "soft_ce": 0.5}
    assert "| ensemble (K=2) |" in (study / "metrics/eval/table.md").read_text()
