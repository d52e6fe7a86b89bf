"""`evaluate` on real SST-2 samples with a tiny teacher and a tiny exported student."""

import json

import pandas as pd
import pytest

from distillery.config import EvaluateConfig, ExportConfig, PrepareConfig
from distillery.data.prepare import load_prepared, prepare
from distillery.evaluate.budget import RUNTIME_LABELS
from distillery.evaluate.report import evaluate, pareto
from distillery.export.onnx import export_student
from distillery.export.runtime import session
from distillery.students import save_student
from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent
from tests.conftest import GLUE, conf

pytestmark = pytest.mark.needs_data


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_teacher, sst2_prepared):
    """A tiny BiLSTM student, saved and exported (ONNX + int8) against the 100-row dev sample."""
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("eval")
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=16, hidden_size=8, mlp_size=8)).eval()
    save_student(model, tok, root / "students" / "s", {"name": "s", "task": "sst2", "metric": "accuracy",
                 "label_names": ["negative", "positive"], "max_seq_len": 64,
                 "history": [{"epoch": 1, "loss": 0.0, "dev_accuracy": 0.5}]})
    export_student(conf(ExportConfig, ), root / "students" / "s", sst2_prepared, root / "exports" / "s")
    return root


def test_evaluate_scores_every_runtime_on_the_set_it_is_given(tmp_path, exported, tiny_teacher):
    """A second prepared set (other dev rows): ONNX and int8 figures are that set's, not export time's."""
    other = tmp_path / "other"
    prepare(conf(PrepareConfig, task="sst2", data_dir=str(GLUE / "SST-2"), max_train=10, max_dev=150, seed=7), other)
    cfg = conf(EvaluateConfig, repeats=2, warmup=0, batch_sizes=(1, 4),
               budget={"max_ms_per_text": 1000.0, "batch_size": 4, "runtime": "any", "min_retention": 0.0})
    r = evaluate(cfg, other, tiny_teacher, exported / "students", tmp_path / "out", exported / "exports", ["s"])
    table = pd.read_csv(tmp_path / "out" / "tradeoff.csv")
    assert sorted(zip(table.model, table.runtime)) == sorted(
        (m, rt) for m in ("teacher", "s") for rt in ("pytorch", "onnx", "int8"))
    dev = load_prepared(other).dev
    labels = dev["label"].to_numpy()
    from distillery.students import load_student

    model, tok, _ = load_student(exported / "students" / "s")
    for runtime, file in (("onnx", "model.onnx"), ("int8", "model.int8.onnx")):
        sess = session(exported / "exports" / "s" / file)
        batch = model.collate(tok, dev["text_a"].tolist(), None, 64)
        pred = sess.run(["logits"], {k: v.numpy() for k, v in batch.items()})[0].argmax(-1)
        row = table[(table.model == "s") & (table.runtime == runtime)].iloc[0]
        assert row.score == pytest.approx(float((pred == labels).mean()), abs=1e-4)  # measured on the 150 rows
        at_export = json.loads((exported / "exports" / "s" / "export.json").read_text())[f"{runtime}_dev_accuracy"]
        assert row.score != pytest.approx(at_export, abs=1e-4)  # export time's figure is the 100-row set's
    assert (table.filter(like="latency_bs").to_numpy() > 0).all()
    teacher_onnx = table[(table.model == "teacher") & (table.runtime == "onnx")].iloc[0]
    assert teacher_onnx.agreement >= 0.99 and teacher_onnx.speedup_bs1 == pytest.approx(1.0)
    assert f"`{other / 'dev.tsv'}`: sst2, 150 rows" in r["markdown"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rows"] == 150 and set(summary["s"]) == {"accuracy", "retention", "latency_bs1_ms"}
    best = table[table.model == "s"].sort_values(["score", "latency_bs4_ms"], ascending=[False, True]).iloc[0]
    assert (summary["pick"]["student"], summary["pick"]["runtime"]) == ("s", best.runtime)  # the one student
    assert summary["pick"]["ms_per_text"] == pytest.approx(best.latency_bs4_ms / 4, abs=1e-3)
    assert f"| s (pick: {RUNTIME_LABELS[best.runtime]}) |" in r["markdown"]
    assert "Pick for the budget (<= 1000 ms per text at batch 4 in any runtime): **s** in" in r["markdown"]
    assert (tmp_path / "out" / "tradeoff.png").stat().st_size > 10_000
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no scratch left


def test_pytorch_only_runtime_skips_the_exports(tmp_path, exported, tiny_teacher, sst2_prepared):
    cfg = conf(EvaluateConfig, repeats=1, warmup=0, batch_sizes=(2,), runtimes=("pytorch",), budget=None)
    evaluate(cfg, sst2_prepared, tiny_teacher, exported / "students", tmp_path, exported / "exports", ["s"])
    table = pd.read_csv(tmp_path / "tradeoff.csv")
    assert set(table.runtime) == {"pytorch"} and list(table.model) == ["teacher", "s"]
    assert table.retention.iloc[0] == 1.0


def test_pareto_keeps_points_nothing_beats():
    t = pd.DataFrame({"lat": [1.0, 2.0, 3.0, 4.0, 5.0], "score": [0.80, 0.79, 0.85, 0.85, 0.90]})
    assert pareto(t, "lat").index.tolist() == [0, 2, 4]  # 0.79 is slower and worse; 0.85 at 4 ms ties a faster one


def test_runtime_params_are_checked():
    from distillery.errors import DistilleryError

    with pytest.raises(DistilleryError, match="evaluate.runtimes: unknown runtime 'tensorrt'"):
        conf(EvaluateConfig, runtimes=("pytorch", "tensorrt"))
    with pytest.raises(DistilleryError, match="must include pytorch"):
        conf(EvaluateConfig, runtimes=("onnx",))


def test_a_test_file_is_scored_beside_dev(tmp_path, exported, tiny_teacher):
    """prepare.test_file: every model is scored on it too, in its own columns, and the dev figures stay the dev set's."""
    dev = pd.read_csv(GLUE / "SST-2" / "dev.tsv", sep="\t")
    dev.iloc[400:480].to_csv(tmp_path / "held_out.tsv", sep="\t", index=False)  # 80 labelled rows not in dev below
    own = dict(task="sent", data_dir=str(GLUE / "SST-2"), train_file="train.tsv", dev_file="dev.tsv", format="tsv",
               text_column="sentence", label_column="label", max_train=10, max_dev=100, seed=0)
    prepare(conf(PrepareConfig, **own, test_file=str(tmp_path / "held_out.tsv")), tmp_path / "with")
    prepare(conf(PrepareConfig, **own), tmp_path / "without")
    cfg = conf(EvaluateConfig, repeats=1, warmup=0, batch_sizes=(2,), runtimes=("pytorch",), budget=None)
    r = evaluate(cfg, tmp_path / "with", tiny_teacher, exported / "students", tmp_path / "o1", exported / "exports", ["s"])
    evaluate(cfg, tmp_path / "without", tiny_teacher, exported / "students", tmp_path / "o2", exported / "exports", ["s"])
    with_test, plain = pd.read_csv(tmp_path / "o1" / "tradeoff.csv"), pd.read_csv(tmp_path / "o2" / "tradeoff.csv")
    assert list(with_test.score) == list(plain.score) and "test_score" not in plain
    from distillery.teacher.train import load_teacher
    import torch

    model, tok, _ = load_teacher(tiny_teacher)
    test = load_prepared(tmp_path / "with").test
    with torch.inference_mode():
        logits = model(**tok(test["text_a"].tolist(), padding=True, truncation=True, max_length=64,
                             return_tensors="pt")).logits
    expected = float((logits.argmax(-1).numpy() == test["label"].to_numpy()).mean())
    assert with_test.set_index("model").loc["teacher", "test_score"] == pytest.approx(expected, abs=1e-4)
    assert "| test accuracy | test retention |" in r["markdown"]
    assert "held_out.tsv`, 80 rows, scored beside it and never used to stop training or to choose" in r["markdown"]
    assert "(from `" + str(GLUE / "SST-2" / "dev.tsv") + "`)" in r["markdown"]  # the dev file, not train's
    summary = json.loads((tmp_path / "o1" / "summary.json").read_text())
    assert set(summary["s"]) >= {"test_accuracy", "test_retention"}
