import json

import pytest
import torch

from distillery.config import ExportConfig, PrepareConfig
from distillery.data.prepare import prepare
from distillery.export.onnx import export_student
from distillery.students import save_student
from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent
from tests.conftest import GLUE, conf

pytestmark = pytest.mark.needs_data


@pytest.mark.parametrize("task,folder", [("sst2", "SST-2"), ("rte", "RTE")])
def test_export_single_and_pair_students_agree_with_pytorch(tmp_path, task, folder):
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    prep = tmp_path / "prep"
    prepare(conf(PrepareConfig, task=task, data_dir=str(GLUE / folder), max_train=20, max_dev=40), prep)
    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)  # an untrained model has tiny margins: int8 agreement depends on its draw
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=16, hidden_size=8, mlp_size=8,
                                       pair=task == "rte")).eval()
    history = [{"epoch": 1, "loss": 0.0, "dev_accuracy": 0.5}]
    save_student(model, tok, tmp_path / "student", {"name": "s", "task": task, "metric": "accuracy",
                 "label_names": ["a", "b"], "max_seq_len": 64, "history": history})
    r = export_student(conf(ExportConfig, ), tmp_path / "student", prep, tmp_path / "export")
    assert r["onnx_agreement"] == 1.0 and r["onnx_max_abs_diff"] < 1e-4
    assert r["inputs"] == (["input_ids", "lengths", "input_ids_b", "lengths_b"] if task == "rte" else ["input_ids", "lengths"])
    for f in ("model.onnx", "model.int8.onnx", "tokenizer.json", "README.md", "export.json", "student.json"):
        assert (tmp_path / "export" / f).is_file()
    assert json.loads((tmp_path / "export" / "export.json").read_text())["int8_agreement"] >= 0.85
    import onnx

    lstms = [n for n in onnx.load(str(tmp_path / "export" / "model.onnx")).graph.node if n.op_type == "LSTM"]
    assert len(lstms) == (2 if task == "rte" else 1)  # one bidirectional node per side, with sequence_lens
    assert all(onnx.helper.get_attribute_value(a) == b"bidirectional" for n in lstms for a in n.attribute
               if a.name == "direction") and all(len(n.input) == 5 for n in lstms)


def check_card(folder) -> dict:
    """The card's YAML header parses, and its model-index figures are export.json's."""
    from distillery.export.card import read_header

    head = read_header((folder / "README.md").read_text(encoding="utf-8"))
    export = json.loads((folder / "export.json").read_text())
    assert head["pipeline_tag"] == "text-classification" and head["license"] and head["library_name"]
    assert "knowledge-distillation" in head["tags"]
    (result,) = head["model-index"][0]["results"]
    got = {m["name"]: m["value"] for m in result["metrics"]}
    want = {}
    for metric in head["metrics"]:  # every metric of the task, in every runtime exported
        want |= {f"{metric} (PyTorch)": export[f"dev_{metric}"], f"{metric} (ONNX Runtime)": export[f"onnx_dev_{metric}"]}
        if f"int8_dev_{metric}" in export:
            want[f"{metric} (ONNX Runtime int8)"] = export[f"int8_dev_{metric}"]
    assert got == pytest.approx(want, abs=5e-5)
    assert all(m["type"] in head["metrics"] for m in result["metrics"])
    return head


def test_model_card_header_matches_export(tmp_path):
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    prep = tmp_path / "prep"
    prepare(conf(PrepareConfig, task="sst2", data_dir=str(GLUE / "SST-2"), max_train=20, max_dev=40), prep)
    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=16, hidden_size=8, mlp_size=8)).eval()
    training = {"losses": {"mse_logits": 1.0, "ce": 0.0}, "transfer_set": "augmented", "max_examples": 0, "epochs": 2,
                "batch_size": 8, "lr": 1e-3, "temperature": 1.0, "seed": 0, "intermediate": {}}
    save_student(model, tok, tmp_path / "student", {"name": "s", "task": "sst2", "metric": "accuracy",
                 "label_names": ["negative", "positive"], "max_seq_len": 64, "teacher_dev_metric": 0.9,
                 "training": training, "history": [{"epoch": 1, "loss": 0.0, "dev_accuracy": 0.5}]})
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "distillery.json").write_text(json.dumps({"base_model": "all-MiniLM-L6-v2"}))
    aug = tmp_path / "aug"
    aug.mkdir()
    (aug / "augmented.tsv").write_text("id\ttext_a\n" + "".join(f"{i}\tt{i}\n" for i in range(123)))
    export_student(conf(ExportConfig, license="mit"), tmp_path / "student", prep, tmp_path / "export", teacher, aug)
    head = check_card(tmp_path / "export")
    assert head["base_model"] == "sentence-transformers/all-MiniLM-L6-v2" and head["license"] == "mit"
    assert head["library_name"] == "onnx" and "bilstm" in head["tags"] and "mse_logits" in head["tags"]
    assert head["model-index"][0]["results"][0]["dataset"] == {
        "name": "GLUE SST-2 (40 of 872 validation rows)", "type": "nyu-mll/glue", "config": "sst2", "split": "validation"}
    card = (tmp_path / "export" / "README.md").read_text()
    assert "123 texts" in card and "`mse_logits` (1)" in card and "`ce`" not in card  # weight 0: not a step's loss
    assert "arXiv:1903.12136" in card and "keeps" in card


def test_model_card_refuses_a_licence_that_is_not_an_id():
    from distillery.errors import DistilleryError

    with pytest.raises(DistilleryError, match="export.license"):
        conf(ExportConfig, license="Apache License 2.0")


def run_card_usage(folder, text: str) -> None:
    """Run the card's first usage block, as written, in the export folder, with `text` as the input."""
    import re
    import subprocess
    import sys

    card = (folder / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert "a gorgeous , witty film" in code
    code = code.replace("'a gorgeous , witty film'", repr(text)) + "\nprint(logits.shape)\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "(1, 2)", r.stderr[-2000:]


def test_model_card_usage_runs_on_a_10000_word_text(tmp_path):
    """Issue 30: the card's example with a long text failed inside onnxruntime; it now cuts to the model's length."""
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    prep = tmp_path / "prep"
    prepare(conf(PrepareConfig, task="sst2", data_dir=str(GLUE / "SST-2"), max_train=20, max_dev=20), prep)
    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=16, hidden_size=8, mlp_size=8)).eval()
    save_student(model, tok, tmp_path / "student", {"name": "s", "task": "sst2", "metric": "accuracy",
                 "label_names": ["negative", "positive"], "max_seq_len": 64,
                 "history": [{"epoch": 1, "loss": 0.0, "dev_accuracy": 0.5}]})
    export_student(conf(ExportConfig, quantize=False), tmp_path / "student", prep, tmp_path / "export")
    card = (tmp_path / "export" / "README.md").read_text(encoding="utf-8")
    assert "MAX_LEN = 64" in card
    run_card_usage(tmp_path / "export", " ".join(["film"] * 10_000))
