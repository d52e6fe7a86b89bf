"""MT-DNN KD: the ensemble average, the task sampler, the per-task losses, the multi-task student and its
training recipe, on tiny models (hidden 32) and real GLUE samples."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from distillery.config import StudentConfig, merge_student
from distillery.errors import DistilleryError
from distillery.losses.kd import soft_ce
from distillery.multitask.ensemble import ensemble_fingerprint, mean_probs
from distillery.multitask.sampler import task_batches
from distillery.students.multitask import MultiTaskStudent
from distillery.tasks.multitask import task_losses
from tests.conftest import GLUE, make_tiny_teacher

DEFAULTS = {"common": {"task": "multitask", "transfer_set": "train", "max_examples": 0, "optimizer": "adamw",
                       "betas": [0.9, 0.999],
                       "epochs": 1, "batch_size": 16, "lr": 1e-3, "weight_decay": 0.0, "warmup_ratio": 0.1,
                       "grad_clip": 1.0, "temperature": 1.0, "max_seq_len": 64, "seed": 0, "bucket_batches": 5},
            "mtdnn": {"model_args": {"base_model": "all-MiniLM-L6-v2", "num_layers": 2, "freeze_embeddings": True,
                                     "dropout": 0.1}}}


def mt_config(base_model: str | None = None, **over) -> StudentConfig:
    """The multi-task student `mt` (two tasks) as `distillery distill` builds it from params."""
    block = {"model": "mtdnn", "tasks": ["sst2", "rte"], "losses": {"ce": 0.5, "soft_ce": 0.5}, **over}
    if base_model:
        block["model_args"] = {"base_model": base_model}
    return merge_student("mt", block, DEFAULTS, "mtdnn")


def train(cfg: StudentConfig, root, out):
    """Train through the one recipe (the `multitask` task); (metrics, out folder)."""
    from distillery.distill.recipe import Paths, distill

    m = distill(cfg, Paths(root / "prepared", None, root / "ensemble", None, out, out.with_suffix(".json"),
                           out.with_name(out.name + "-live")))
    return m, out


# ---------------------------------------------------------------- the ensemble average
@pytest.mark.parametrize("values, param", [
    ({"task": "sst2", "seed": 0, "dropout": 0.1}, "members.m.epochs"),
    ({"task": "sst2", "seed": 0, "dropout": 0.1, "epochs": 0}, "members.m.epochs"),
    ({"task": "sst2", "seed": 0, "dropout": 1.0, "epochs": 1}, "members.m.dropout"),
    ({"task": "sst2", "seed": 0, "dropout": 0.1, "epochs": 1, "lr": 1e-4}, "members.m.lr"),
])
def test_a_member_block_is_checked_with_a_one_line_error_naming_the_param(values, param):
    from distillery.config import members_config

    with pytest.raises(DistilleryError) as e:
        members_config({"m": values})
    assert param in str(e.value) and "\n" not in str(e.value)
    assert members_config({"m": {"task": "sst2", "seed": 0, "dropout": 0.1, "epochs": 2.5}})[0].epochs == 2.5


def test_ensemble_averages_probabilities_not_logits():
    a = np.array([[2.0, 0.0], [0.0, 0.0]])
    b = np.array([[0.0, 0.0], [-3.0, 3.0]])
    # by hand: softmax([2, 0]) = [e^2, 1] / (e^2 + 1) = [0.880797, 0.119203]; softmax([0, 0]) = [0.5, 0.5];
    # softmax([-3, 3]) = [1, e^6] / (1 + e^6) = [0.002473, 0.997527]
    expect = np.array([[(0.880797 + 0.5) / 2, (0.119203 + 0.5) / 2],
                       [(0.5 + 0.002473) / 2, (0.5 + 0.997527) / 2]])
    got = mean_probs([a, b])
    np.testing.assert_allclose(got, expect, atol=1e-6)
    np.testing.assert_allclose(got, [[0.690399, 0.309601], [0.251237, 0.748763]], atol=1e-6)
    # averaging logits first would give softmax([1, 0]) = 0.731059 and softmax([-1.5, 1.5]) = 0.047426: different
    assert abs(got[0, 0] - 0.731059) > 0.04 and abs(got[1, 0] - 0.047426) > 0.2
    assert mean_probs([a])[0, 0] == pytest.approx(0.880797, abs=1e-6)


def test_ensemble_fingerprint_names_its_members_in_any_order():
    assert ensemble_fingerprint(["b", "a"]) == ensemble_fingerprint(["a", "b"])
    assert ensemble_fingerprint(["a", "b"]) != ensemble_fingerprint(["a", "c"])


def test_soft_ce_on_stored_log_probabilities_is_ce_against_the_ensemble():
    """The ensemble artifact stores log p; soft_ce at T = 1 reads it as logits: -sum p log softmax(z_s)."""
    p = torch.tensor([[0.690399, 0.309601]])
    z = torch.tensor([[1.0, -1.0]])
    # by hand: log softmax([1, -1]) = [-0.126928, -2.126928]; -(0.690399 * -0.126928 + 0.309601 * -2.126928)
    assert soft_ce(z, p.log(), 1.0).item() == pytest.approx(0.746130, abs=1e-5)


# ---------------------------------------------------------------- the sampler
def test_sampler_mixes_tasks_in_proportion_to_their_size():
    lengths = {"big": np.random.default_rng(0).integers(5, 60, 3200), "mid": np.full(800, 20), "small": np.arange(160)}
    batches = task_batches(lengths, batch_size=16, rng=np.random.default_rng(1), chunk=10)
    counts = {t: sum(1 for task, _ in batches if task == t) for t in lengths}
    assert counts == {"big": 200, "mid": 50, "small": 10}  # every batch holds one task, sizes / 16
    for t, n in lengths.items():  # every row of every task once per epoch
        rows = np.concatenate([idx for task, idx in batches if task == t])
        assert sorted(rows.tolist()) == list(range(len(n)))
    # shuffled across tasks: any stretch of the epoch mixes them in about the same proportions
    first = [task for task, _ in batches[:130]]
    assert 0.68 < first.count("big") / 130 < 0.86 and first.count("small") < 12
    assert [t for t, _ in batches[:10]] != sorted(t for t, _ in batches[:10])


def test_sampler_is_reproducible_and_skips_empty_tasks():
    lengths = {"a": np.arange(50), "b": np.arange(0)}
    one = task_batches(lengths, 8, np.random.default_rng(3))
    two = task_batches(lengths, 8, np.random.default_rng(3))
    assert [(t, i.tolist()) for t, i in one] == [(t, i.tolist()) for t, i in two]
    assert {t for t, _ in one} == {"a"}


# ---------------------------------------------------------------- losses per task
def test_task_without_teacher_learns_from_gold_only():
    cfg = mt_config()
    with_t = task_losses(cfg, "sst2", True, MultiTaskStudent)
    without = task_losses(cfg, "rte", False, MultiTaskStudent)
    assert {n: w for n, (w, _) in with_t.items()} == {"ce": 0.5, "soft_ce": 0.5}
    assert {n: w for n, (w, _) in without.items()} == {"ce": 1.0}  # the same total weight, all on gold labels
    with pytest.raises(DistilleryError, match=r"param students\.mt\.losses: task rte has no teacher"):
        task_losses(mt_config(losses={"soft_ce": 1.0}), "rte", False, MultiTaskStudent)


def test_feature_losses_are_refused_for_a_multitask_student():
    with pytest.raises(DistilleryError, match=r"param students\.mt\.losses\.tinybert_hidden"):
        task_losses(mt_config(losses={"tinybert_hidden": 1.0}), "sst2", True, MultiTaskStudent)


def test_config_checks_every_number_and_name():
    with pytest.raises(DistilleryError, match=r"param students\.mt\.lr"):
        mt_config(lr=0)
    with pytest.raises(DistilleryError, match=r"param students\.mt\.tasks: names a task twice"):
        mt_config(tasks=["sst2", "sst2"])
    with pytest.raises(DistilleryError, match=r"param students\.mt\.tasks"):
        mt_config(tasks=["../x"])
    with pytest.raises(DistilleryError, match=r"param students\.mt\.layers: unknown setting"):
        mt_config(layers=3)
    with pytest.raises(DistilleryError, match=r"param students\.mt\.model_args\.layers: mtdnn has no such setting"):
        from distillery.distill.recipe import student_config

        student_config("mt", {"model": "mtdnn", "tasks": ["sst2"], "losses": {"ce": 1}, "model_args": {"layers": 3}},
                       DEFAULTS)


# ---------------------------------------------------------------- training, end to end on real samples
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two prepared tasks (SST-2 and RTE samples); SST-2 with a two-member ensemble (made from hand-set
    logits through the real artifact writer), RTE with none."""
    from distillery.config import PrepareConfig, from_section
    from distillery.data.prepare import load_prepared, prepare
    from distillery.logits.artifact import write_logits
    from distillery.multitask.ensemble import FLOOR

    root = tmp_path_factory.mktemp("study")
    base = make_tiny_teacher(root / "base")
    for task, folder, n in (("sst2", "SST-2", 96), ("rte", "RTE", 48)):
        cfg = from_section(PrepareConfig, "tasks", {"task": task, "data_dir": str(GLUE / folder), "max_train": n,
                                                    "max_dev": 40, "seed": 0, "duplicates": "majority"})
        prepare(cfg, root / "prepared" / task)
    prep = load_prepared(root / "prepared" / "sst2")
    ids = prep.train["id"].tolist() + prep.dev["id"].tolist()
    rng = np.random.default_rng(0)
    p = mean_probs([rng.normal(size=(len(ids), 2)) for _ in range(2)])
    meta = {"kind": "ensemble", "task": "sst2", "label_names": prep.label_names, "fingerprint": "f" * 16,
            "members": [{"name": "a", "fingerprint": "1"}, {"name": "b", "fingerprint": "2"}]}
    write_logits(root / "ensemble" / "sst2", ids, {"logits": np.log(np.maximum(p, FLOOR))}, meta)
    rte = load_prepared(root / "prepared" / "rte")
    write_logits(root / "ensemble" / "rte", [], {"logits": np.zeros((0, 2))},
                 {"kind": "ensemble", "task": "rte", "label_names": rte.label_names, "members": [], "fingerprint": ""})
    return root, base


@pytest.mark.needs_data
def test_multitask_student_trains_every_task_and_answers_from_one_model(study):
    from distillery.students import load_student

    root, base = study
    m, _ = train(mt_config(base_model=str(base)), root, root / "out")
    assert set(m["tasks"]) == {"sst2", "rte"} and m["tasks"]["rte"]["teacher"] is False
    assert m["tasks"]["sst2"]["teacher"] is True
    model, tok, info = load_student(root / "out")
    assert info["tasks"]["rte"]["losses"] == {"ce": 1.0} and info["tasks"]["sst2"]["losses"] == {"ce": 0.5, "soft_ce": 0.5}
    batch = model.collate(tok, ["a fine film", "dull"], None, 64)
    out = model(**batch)
    assert set(out.logits) == {"sst2", "rte"} and out.logits["sst2"].shape == (2, 2)  # (bs, n_labels) per head
    assert model.encoder.config.num_hidden_layers == 2 and len(model.heads) == 2
    # one shared encoder: the heads read the same pooled state
    assert sum(p.numel() for p in model.heads.parameters()) == 2 * (32 * 2 + 2)


@pytest.mark.needs_data
def test_a_task_the_data_lacks_stops_with_one_line_naming_the_param(study, tmp_path):
    root, base = study
    params = tmp_path / "params.yaml"
    defaults = {**DEFAULTS, "mtdnn": {"model_args": {**DEFAULTS["mtdnn"]["model_args"], "base_model": str(base)}}}
    params.write_text(yaml.safe_dump({"distill": defaults, "students": {"mt": {
        "model": "mtdnn", "tasks": ["sst2", "qnli"], "losses": {"ce": 1.0}}}}))
    r = subprocess.run([sys.executable, "-m", "stages.cli", "distill", "--name", "mt", "--params", str(params),
                        "--prepared", str(root / "prepared"), "--logits", str(root / "ensemble"),
                        "--out", str(tmp_path / "s"), "--metrics", str(tmp_path / "m.json"),
                        "--live-dir", str(tmp_path / "live")], capture_output=True, text=True)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: param students.mt.tasks: no task 'qnli'"), r.stderr
    assert "rte, sst2" in lines[0] and not (tmp_path / "s").exists()


@pytest.mark.needs_data
def test_export_is_one_graph_answering_every_task(study, tmp_path):
    import onnx

    from distillery.multitask.export import export_multitask

    root, base = study
    train(mt_config(base_model=str(base)), root, tmp_path / "s")
    rep = export_multitask(tmp_path / "s", root / "prepared", tmp_path / "e", opset=17, min_agreement=0.99)
    assert set(rep) == {"sst2", "rte"} and all(r["agreement"] >= 0.99 for r in rep.values())
    graph = onnx.load(str(tmp_path / "e" / "model.onnx")).graph
    assert sorted(o.name for o in graph.output) == ["logits_rte", "logits_sst2"]
    tasks = json.loads((tmp_path / "e" / "tasks.json").read_text())
    assert tasks["tasks"]["rte"]["output"] == "logits_rte" and tasks["tasks"]["rte"]["pair"] is True
