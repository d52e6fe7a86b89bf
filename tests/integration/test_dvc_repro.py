"""Runs the real DAG with `dvc repro` on a tiny params file, in a temporary copy of the repo.

Then runs a queued two-point sweep of one student's param: each experiment re-runs only that student (and
its export and evaluate), and `dvc exp show` / `dvc plots diff` see each experiment's own results.
"""

import json
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import GLUE, REPO, make_tiny_teacher, readme_block
from tests.export.test_onnx import check_card

pytestmark = pytest.mark.integration


def sh(args, cwd):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(map(str, args))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout + r.stderr


def experiment_metrics(shown: list) -> tuple[dict, dict]:
    """From `dvc exp show --json`: the baseline commit's metrics, and {experiment name: {params, metrics}}."""
    def flat(data: dict, kind: str) -> dict:
        return {path: v.get("data", {}) for path, v in (data.get(kind) or {}).items()}

    base = next(e for e in shown if e["rev"] != "workspace")
    exps = {}
    for group in base.get("experiments") or []:
        for rev in group["revs"]:
            exps[rev["name"]] = {"params": flat(rev["data"], "params").get("params.yaml", {}),
                                 "metrics": flat(rev["data"], "metrics")}
    return flat(base["data"], "metrics"), exps


def copy_repo(repo):
    """The project's files (tracked and new, not ignored) without the default run's results, in `repo`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    results = ("metrics/", "dvclive/", "dvc.lock")  # the default run's, committed; this repo makes its own
    for f in (f for f in files if not f.startswith(results)):
        if (REPO / f).is_file():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, repo / f)


def git_commit(repo, message: str) -> None:
    if not (repo / ".git").exists():
        sh(["git", "init", "-q"], repo)
        sh(["git", "config", "user.name", "distillery test"], repo)  # dvc exp commits; a fresh machine has no identity
        sh(["git", "config", "user.email", "test@distillery.invalid"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", message], repo)


def test_dvc_repro_tiny(tmp_path):
    repo = tmp_path / "repo"
    copy_repo(repo)
    teacher = make_tiny_teacher(tmp_path / "tiny_teacher", layers=4)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prepare"].update(data_dir=str(GLUE / "SST-2"), max_train=300, max_dev=100)
    params["teacher"].update(base_model=str(teacher), bf16=False, lr=1e-3, logging_steps=5)
    params["augment"].update(n_iter=2)
    params["soft_labels"].update(features=["cls@2", "cls@3"])  # PKD-Skip's layer for a 2-layer student: 2
    keep = {"bilstm_kd", "bilstm_kd_noaug", "bilstm_ce", "pkd_skip", "distilbert", "tinybert"}
    params["students"] = {k: v for k, v in params["students"].items() if k in keep}
    for s in params["students"].values():
        s.update(epochs=1)
        args = s.setdefault("model_args", {})  # added to the family defaults of `distill:`
        if s["model"] == "bilstm":
            args.update(hidden_size=16, mlp_size=16)
        elif s["model"] == "tinybert":
            args.update(num_layers=2, hidden_size=16)
            s["intermediate"].update(max_examples=200)
            s.update(max_examples=300)
        else:
            args.update(num_layers=2)
    params["students"]["bilstm_kd"]["max_examples"] = 0  # every augmented text; the sweep below caps it
    params["evaluate"].update(repeats=3, warmup=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git_commit(repo, "tiny")

    out = sh([sys.executable, "-m", "dvc", "repro"], repo)
    assert "| model | family | params (M) | accuracy | retention |" in out  # the table is printed at the end
    summary = json.loads((repo / "metrics/eval/summary.json").read_text())
    assert set(summary) - {"task", "metric", "rows", "pick"} == {"teacher"} | set(params["students"])
    pick = summary["pick"]  # the budget of params.yaml: a student within it, or none and why
    assert pick["budget"] == params["evaluate"]["budget"] and (pick["student"] in params["students"] or pick["why"])
    for name in params["students"]:
        assert 0 <= summary[name]["accuracy"] <= 1 and summary[name]["latency_bs1_ms"] > 0
        assert (repo / "exports" / name / "model.onnx").is_file()
        assert json.loads((repo / "exports" / name / "export.json").read_text())["onnx_agreement"] >= 0.999
        head = check_card(repo / "exports" / name)  # the Hub header parses; its model-index is export.json's
        assert name in head["tags"] or params["students"][name]["model"] in head["tags"]
    tiny_card = (repo / "exports" / "tinybert" / "README.md").read_text()
    assert "intermediate-layer distillation" in tiny_card and "`tinybert_hidden`" in tiny_card  # both steps
    assert (repo / "exports" / "tinybert" / "model.safetensors").is_file()  # loads with from_pretrained too
    table = (repo / "metrics/eval/table.md").read_text()
    assert "int8 ONNX accuracy (agreement)" in table and "| tinybert |" in table
    manifest = json.loads((repo / "data/logits/manifest.json").read_text())
    assert manifest["n_rows"] > 400
    assert (repo / "dvclive/students/bilstm_kd/plots/metrics/dev/accuracy.tsv").is_file()
    assert (repo / "dvclive/students/tinybert/plots/metrics/intermediate/loss.tsv").is_file()  # step 1 ran
    tiny = json.loads((repo / "models/students/tinybert/student.json").read_text())
    steps = [h["step"] for h in tiny["history"]]  # step 1's epoch, then params.yaml's 4 dev scores an epoch
    assert steps == ["intermediate"] + ["train"] * (len(steps) - 1) and tiny["history"][-1]["kept"]
    assert 1 <= len(steps) - 2 <= 4 * tiny["training"]["epochs"]
    assert json.loads((repo / "metrics/students/pkd_skip.json").read_text())["teacher_forward_texts"] == 0  # store
    metrics = sh([sys.executable, "-m", "dvc", "metrics", "show"], repo)
    assert "metrics/eval/summary.json" in metrics
    prep = json.loads((repo / "metrics/prepare.json").read_text())
    assert prep["dev"] == {"rows_read": 872, "rows_kept": 100, "distinct_texts": 100}

    git_commit(repo, "lock")
    tracked = sh(["git", "ls-files", "metrics", "dvclive"], repo)  # results are kept by git, per commit
    assert "metrics/eval/summary.json" in tracked and "dvclive/students/bilstm_kd/plots/metrics/dev/accuracy.tsv" in tracked

    # a queued two-point sweep: each experiment re-runs only its student, its export and evaluate
    sh([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-S", "students.bilstm_kd.max_examples=200,400"], repo)
    out = sh([sys.executable, "-m", "dvc", "exp", "run", "--run-all"], repo)
    for stage in ("prepare", "teacher", "augment", "soft-labels", "distill@bilstm_ce", "export@bilstm_ce"):
        assert f"Stage '{stage}' didn't change, skipping" in out, out[-3000:]
    for stage in ("distill@bilstm_kd", "export@bilstm_kd", "evaluate"):
        assert f"Running stage '{stage}'" in out
    shown = json.loads(subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo,
                                      capture_output=True, text=True, check=True).stdout)
    baseline, exps = experiment_metrics(shown)
    assert baseline["metrics/eval/summary.json"]["bilstm_kd"] == summary["bilstm_kd"]  # main's row has main's results
    assert baseline["metrics/teacher.json"]["dev_accuracy"] > 0
    assert len(exps) == 2
    for e in exps.values():  # each experiment shows its own student's metrics, made with its own param
        student = e["metrics"]["metrics/students/bilstm_kd.json"]
        assert student["transfer_examples"] == e["params"]["students"]["bilstm_kd"]["max_examples"]
        assert 0 <= student["dev_accuracy"] <= 1 and 0 <= e["metrics"]["metrics/eval/summary.json"]["bilstm_kd"]["accuracy"] <= 1
    assert sorted(e["metrics"]["metrics/students/bilstm_kd.json"]["transfer_examples"] for e in exps.values()) == [200, 400]
    assert baseline["metrics/students/bilstm_kd.json"]["transfer_examples"] not in (200, 400)
    a, b = exps
    sh([sys.executable, "-m", "dvc", "plots", "diff", a, b, "-o", str(tmp_path / "plots")], repo)
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "tradeoff" in html and "bilstm_kd" in html

    # the README's first sweep command, as written there: an inherited setting (lr) overridden with `++`
    first = next(ln.split("#")[0].strip() for ln in readme_block("## Sweep a parameter").splitlines()
                 if ln.startswith("dvc exp run -S '++students.bilstm_kd."))
    out = sh([sys.executable, "-m", *shlex.split(first)], repo)
    for stage in ("prepare", "teacher", "augment", "soft-labels", "distill@bilstm_ce"):
        assert f"Stage '{stage}' didn't change, skipping" in out, out[-3000:]
    assert "Running stage 'distill@bilstm_kd'" in out and "Running stage 'evaluate'" in out

    # a student key that is a path: DVC refuses the whole graph (overlapping outputs), nothing is deleted
    bad = yaml.safe_load((repo / "params.yaml").read_text())
    bad["students"]["."] = dict(bad["students"]["bilstm_ce"])
    (repo / "params.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, capture_output=True, text=True)
    assert r.returncode != 0 and "overlap" in r.stderr + r.stdout
    assert sorted(p.name for p in (repo / "models/students").iterdir()) == sorted(params["students"])
