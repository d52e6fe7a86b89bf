"""`distillery predict`: a tiny student (its folder and its export) and the tiny teacher label real SST-2 dev rows in
every runtime, exactly as `evaluate` scores them; bad inputs and outputs are one line and nothing is written."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from distillery.config import EvaluateConfig, ExportConfig
from distillery.data.prepare import load_prepared
from distillery.errors import DistilleryError
from distillery.evaluate.predict import predict
from distillery.evaluate.report import student_runners, teacher_runners
from distillery.export.onnx import export_student
from distillery.inference.run import predict_file, record_path
from distillery.students import load_student, save_student
from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent
from tests.conftest import REPO, conf

pytestmark = pytest.mark.needs_data
INFO = {"task": "sst2", "metric": "accuracy", "label_names": ["negative", "positive"], "max_seq_len": 64,
        "pair": False, "history": [{"epoch": 1, "loss": 0.0, "dev_accuracy": 0.5}]}


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_teacher, sst2_prepared):
    """A tiny BiLSTM and a tiny 2-layer transformer student, saved and exported (ONNX + int8)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distillery.students.transformer import TransformerConfig, TransformerStudent

    root = tmp_path_factory.mktemp("predict")
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    __import__("torch").manual_seed(0)
    bilstm = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=16, hidden_size=8, mlp_size=8)).eval()
    save_student(bilstm, tok, root / "students" / "b", {**INFO, "name": "b"})
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_teacher)
    bert = TransformerStudent(TransformerConfig(num_labels=2, input_names=list(tok.model_input_names)), hf).eval()
    save_student(bert, tok, root / "students" / "t", {**INFO, "name": "t"})
    for name in ("b", "t"):
        export_student(conf(ExportConfig), root / "students" / name, sst2_prepared, root / "exports" / name)
    return root


def _dev_csv(tmp_path, sst2_prepared, name="dev.csv"):
    dev = load_prepared(sst2_prepared).dev
    path = tmp_path / name
    pd.DataFrame({"id": range(len(dev)), "sentence": dev["text_a"], "gold": dev["label"]}).to_csv(path, index=False)
    return path, dev


def _evaluate_labels(runner, dev) -> np.ndarray:
    """What `evaluate` predicts for every dev row with this runner (its scoring call)."""
    return predict(runner.collate, runner.run, dev, 2, False).argmax(-1)


@pytest.mark.parametrize("where,runtime", [("students/b", "pytorch"), ("exports/b", "onnx"), ("exports/b", "int8"),
                                           ("exports/t", "pytorch"), ("exports/t", "onnx"), ("exports/t", "int8")])
def test_predict_equals_evaluate_in_every_runtime(tmp_path, models, sst2_prepared, where, runtime):
    src, dev = _dev_csv(tmp_path, sst2_prepared)
    name = where.split("/")[1]
    model, tok, info = load_student(models / "students" / name)
    runners = student_runners(name, info["family"], model, tok, 64, models / "students" / name,
                              models / "exports" / name, conf(EvaluateConfig))
    expected = _evaluate_labels(next(r for r in runners if r.runtime == runtime), dev)
    out = tmp_path / "out.csv"
    r = predict_file(models / where, runtime, src, out, text="sentence", batch_size=7, chunk_rows=33)
    got = pd.read_csv(out)
    assert list(got.columns) == ["id", "sentence", "gold", "prediction", "probability"]
    assert got["id"].tolist() == list(range(len(dev)))  # the input's rows, in the input's order
    assert got["prediction"].tolist() == [["negative", "positive"][i] for i in expected]
    assert ((got["probability"] >= 0.5) & (got["probability"] <= 1)).all()
    assert r["rows"] == len(dev) and sum(r["labels"].values()) == len(dev)
    assert json.loads(record_path(out).read_text())["sha256"]


def test_the_teacher_labels_as_evaluate_scores_it(tmp_path, tiny_teacher, sst2_prepared):
    src, dev = _dev_csv(tmp_path, sst2_prepared)
    runner = teacher_runners(tiny_teacher, dev, False, 2, tmp_path, conf(EvaluateConfig, runtimes=("pytorch",)))[0]
    out = tmp_path / "out.jsonl"
    predict_file(tiny_teacher, "pytorch", src, out, text="sentence")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prediction"] for r in rows] == [["negative", "positive"][i] for i in _evaluate_labels(runner, dev)]
    assert rows[0]["sentence"] == dev["text_a"][0] and set(rows[0]) == {"id", "sentence", "gold", "prediction",
                                                                          "probability"}


@pytest.mark.parametrize("suffix", ["tsv", "jsonl", "parquet"])
def test_each_format_round_trips_its_rows(tmp_path, models, sst2_prepared, suffix):
    dev = load_prepared(sst2_prepared).dev.head(40)
    frame = pd.DataFrame({"n": np.arange(40), "text": dev["text_a"]})
    src = tmp_path / f"in.{suffix}"
    if suffix == "tsv":
        frame.to_csv(src, sep="\t", index=False)
    elif suffix == "jsonl":
        frame.to_json(src, orient="records", lines=True)
    else:
        frame.to_parquet(src)
    out = tmp_path / f"out.{suffix}"
    predict_file(models / "exports" / "b", "onnx", src, out, chunk_rows=16)
    got = {"tsv": lambda p: pd.read_csv(p, sep="\t"), "jsonl": lambda p: pd.read_json(p, lines=True),
           "parquet": pd.read_parquet}[suffix](out)
    assert got["n"].tolist() == list(range(40)) and got["text"].tolist() == frame["text"].tolist()
    assert set(got["prediction"]) <= {"negative", "positive"} and len(got) == 40
    if suffix == "parquet":
        import pyarrow.parquet as pq

        assert pq.read_schema(out).metadata[b"distillery"] == b"predict"


def _fails(tmp_path, models, content: str | bytes, match: str, name="bad.csv", **kw):
    src = tmp_path / name
    src.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "out.csv"
    with pytest.raises(DistilleryError, match=match):
        predict_file(models / "exports" / "b", "onnx", src, out, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written, no scratch


@pytest.mark.parametrize("content,match", [
    ("", r"bad\.csv: file is empty"),
    ("text\n", r"bad\.csv: no rows to label"),
    ("sentence\na fine film\n", r"bad\.csv: no column 'text' \(--text-column\); it has: sentence"),
    ("text\na fine film\n\"\"\n", r"bad\.csv:3: empty text"),
    ("text,n\na fine film,1\nsecond,2,3\n", r"bad\.csv:3: 3 fields where the header has 2"),
    (b"text\nfine\n\xff\xfe bad\n", r"bad\.csv:3: not valid UTF-8"),
    ("text,prediction\nfine,positive\n", r"bad\.csv: already has a column 'prediction', which predict writes"),
])
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, models, content, match):
    _fails(tmp_path, models, content, match)


def test_a_bad_row_late_in_the_file_writes_nothing(tmp_path, models):
    rows = "".join(f"row number {i}\n" for i in range(500)) + "\u200b\n"  # nothing visible
    _fails(tmp_path, models, "text\n" + rows, r"bad\.csv:502: empty text", chunk_rows=64)


def test_jsonl_record_without_the_key(tmp_path, models):
    _fails(tmp_path, models, '{"text": "good"}\n{"other": "x"}\n', r"bad\.jsonl:2: no key 'text'", name="bad.jsonl")


def test_an_existing_output_is_replaced_only_when_predict_wrote_it(tmp_path, models, sst2_prepared):
    src, _ = _dev_csv(tmp_path, sst2_prepared)
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    with pytest.raises(DistilleryError, match="not an unchanged `distillery predict` output"):
        predict_file(models / "exports" / "b", "onnx", src, mine, text="sentence")
    assert mine.read_text() == "my,own\n1,2\n"
    with pytest.raises(DistilleryError, match="is the input file"):
        predict_file(models / "exports" / "b", "onnx", src, src, text="sentence")
    out = tmp_path / "out.csv"
    predict_file(models / "exports" / "b", "onnx", src, out, text="sentence")
    predict_file(models / "exports" / "b", "int8", src, out, text="sentence")  # its own earlier output: replaced
    assert json.loads(record_path(out).read_text())["runtime"] == "int8"
    out.write_text(out.read_text() + "a hand-made line\n")
    with pytest.raises(DistilleryError, match="not an unchanged"):  # edited since: it is the user's now
        predict_file(models / "exports" / "b", "onnx", src, out, text="sentence")


def test_models_and_runtimes_it_cannot_serve(tmp_path, models, tiny_teacher, sst2_prepared):
    src, _ = _dev_csv(tmp_path, sst2_prepared)
    out = tmp_path / "o.csv"
    with pytest.raises(DistilleryError, match="holds no PyTorch weights.*--runtime onnx or int8"):
        predict_file(models / "exports" / "b", "pytorch", src, out, text="sentence")
    with pytest.raises(DistilleryError, match="no ONNX graph here; point --model at exports/b"):
        predict_file(models / "students" / "b", "onnx", src, out, text="sentence")
    with pytest.raises(DistilleryError, match="the teacher is a PyTorch folder"):
        predict_file(tiny_teacher, "int8", src, out, text="sentence")
    with pytest.raises(DistilleryError, match="reads one text a row"):
        predict_file(models / "exports" / "b", "onnx", src, out, text="sentence", pair="gold")
    with pytest.raises(DistilleryError, match="neither a student"):
        predict_file(tmp_path, "onnx", src, out, text="sentence")
    assert not out.exists()


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "stages.cli", "predict", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_leaves_no_partial_file(tmp_path, models, sig):
    src = tmp_path / "big.csv"
    src.write_text("text\n" + "".join(f"a rather long sentence about film number {i} and more\n" for i in range(400_000)))
    out = tmp_path / "big.predictions.csv"
    p = _cli(src, "--model", models / "exports" / "b", "--chunk-rows", 512)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".big.predictions.csv.*.tmp")):
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert not out.exists()
    if sig == signal.SIGTERM:
        assert p.returncode == 130 and "interrupted" in err
        assert sorted(x.name for x in tmp_path.iterdir()) == ["big.csv"]
        return
    src.write_text("text\nshort one\n")  # the next run removes the dead run's scratch
    q = _cli(src, "--model", models / "exports" / "b")
    _, err = q.communicate(timeout=120)
    assert q.returncode == 0, err
    assert sorted(x.name for x in tmp_path.iterdir()) == [".big.predictions.csv.predict.json", "big.csv",
                                                          "big.predictions.csv"]


def test_the_command_prints_one_line_and_the_counts(tmp_path, models, sst2_prepared):
    src, dev = _dev_csv(tmp_path, sst2_prepared, "reviews.csv")
    p = _cli(src, "--model", models / "exports" / "t", "--text-column", "sentence", "--runtime", "int8")
    stdout, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert f"labelled {len(dev)} rows" in stdout and "(int8)" in stdout
    assert len(pd.read_csv(tmp_path / "reviews.predictions.csv")) == len(dev)
    bad = _cli(src, "--model", models / "exports" / "t", "--batch-size", 0, env={**os.environ})
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and err.strip() == "error: param --batch-size: must be in 1..65536, got 0"


def test_a_pair_regression_student_writes_its_score(tmp_path, tiny_teacher):
    """A pair model reads two columns (and refuses one); a regression model writes its score, no probability."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=16, hidden_size=8, mlp_size=8, num_labels=1,
                                       pair=True)).eval()
    save_student(model, tok, tmp_path / "s", {**INFO, "name": "s", "problem": "regression", "label_names": ["score"],
                                              "pair": True})
    src = tmp_path / "pairs.jsonl"
    rows = [{"a": "a man is playing a guitar .", "b": "a man plays the guitar .", "keep": [1, 2]},
            {"b": "the cat sleeps .", "a": "a dog runs in the park ."}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scores.jsonl"
    predict_file(tmp_path / "s", "pytorch", src, out, text="a", pair="b")
    got = [json.loads(line) for line in out.read_text().splitlines()]
    expected = predict(lambda a, b: model.collate(tok, a, b, 64), model.predictor(),
                       pd.DataFrame({"text_a": [r["a"] for r in rows], "text_b": [r["b"] for r in rows]}), 1, True)
    assert [g["prediction"] for g in got] == pytest.approx(expected[:, 0].tolist(), abs=1e-5)
    assert list(got[0]) == ["a", "b", "keep", "prediction"] and got[0]["keep"] == [1, 2]  # the record as it was
    assert list(got[1])[:2] == ["b", "a"]
    with pytest.raises(DistilleryError, match="reads text pairs; name the second text's column"):
        predict_file(tmp_path / "s", "pytorch", src, tmp_path / "x.jsonl", text="a")
