"""Runs the general-distillation study's real DAG (studies/general/dvc.yaml) with `dvc repro` on a tiny params file
in a temporary copy of the repo: real Wikipedia and WikiText-2 text, a tiny plain encoder given a masked-LM head,
a DistilBERT and a progressive MobileBERT general student. Then changes a student: only it re-runs."""

import json
import re
import shutil

import pytest
import yaml

from tests.conftest import REPO, SHARED_DATA
from tests.integration.test_mtdnn_study import DVC, sh
from tests.tasks.test_mlm import tiny_mlm

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not (SHARED_DATA / "corpus").is_dir(), reason="needs ../shared/data/corpus")]
KEEP = ("src/", "stages/", "studies/general/dvc.yaml", "studies/general/params.yaml", "pyproject.toml", ".dvc/")


def test_general_study_tiny(tmp_path):
    repo = tmp_path / "repo"
    for f in sh(["git", "ls-files", "-co", "--exclude-standard"], REPO).split():
        if f.startswith(KEEP) and (REPO / f).is_file():  # the code and the study, none of its outputs
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, repo / f)
    base = tiny_mlm(tmp_path / "base", head=False)
    study = repo / "studies" / "general"
    p = yaml.safe_load((study / "params.yaml").read_text())
    p["prepare"].update(corpus=str(SHARED_DATA / "corpus" / "wikipedia" / "wiki_01"), seq_len=32, max_tokens=6000,
                        heldout=str(SHARED_DATA / "corpus" / "wikitext-2" / "valid.txt"), max_heldout_rows=8)
    p["teacher"].update(base_model=str(base), max_rows=32, batch_size=16, bf16=False, logging_steps=1)
    p["distill"]["transformer"]["batch_size"] = 16
    p["students"] = {"distilbert": {**p["students"]["distilbert"], "max_examples": 32},
                     "mobilebert": {**p["students"]["mobilebert"], "max_examples": 16,
                                    "intermediate": {**p["students"]["mobilebert"]["intermediate"], "max_examples": 16},
                                    "model_args": {"num_heads": 2, "intra_size": 16, "embedding_size": 16}}}
    (study / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    sh(["git", "init", "-q"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"], repo)

    def ran(log: str) -> set[str]:
        return set(re.findall(r"Running stage 'studies/general/dvc\.yaml:([^']+)'", log))

    first = ran(sh(DVC + ["repro", "studies/general/dvc.yaml"], repo))
    assert first == {"prepare", "teacher", "distill@distilbert", "distill@mobilebert", "evaluate"}
    table = (study / "metrics/eval/table.md").read_text()
    assert all(f"| {m} |" in table for m in ("teacher", "distilbert", "mobilebert")), table
    history = json.loads((study / "models/students/mobilebert/student.json").read_text())["history"]
    assert [h["step"] for h in history] == ["intermediate_block1", "intermediate_block2", "train"]

    p["students"]["distilbert"]["temperature"] = 3.0  # one student's block: only it (and the table) re-run
    (study / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    assert ran(sh(DVC + ["repro", "studies/general/dvc.yaml"], repo)) == {"distill@distilbert", "evaluate"}
