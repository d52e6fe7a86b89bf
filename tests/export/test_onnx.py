import json

import pytest

from distillery.config import ExportConfig, PrepareConfig
from distillery.data.prepare import prepare
from distillery.export.onnx import export_student
from distillery.students import save_student
from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent
from tests.conftest import GLUE

pytestmark = pytest.mark.needs_data


@pytest.mark.parametrize("task,folder", [("sst2", "SST-2"), ("rte", "RTE")])
def test_export_single_and_pair_students_agree_with_pytorch(tmp_path, task, folder):
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    prep = tmp_path / "prep"
    prepare(PrepareConfig(task=task, data_dir=str(GLUE / folder), max_train=20, max_dev=40), prep)
    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    model = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=16, hidden_size=8, mlp_size=8,
                                       pair=task == "rte")).eval()
    history = [{"epoch": 1, "loss": 0.0, "dev_accuracy": 0.5}]
    save_student(model, tok, tmp_path / "student", {"name": "s", "task": task, "metric": "accuracy",
                 "label_names": ["a", "b"], "max_seq_len": 64, "history": history})
    r = export_student(ExportConfig(), tmp_path / "student", prep, tmp_path / "export")
    assert r["onnx_agreement"] == 1.0 and r["onnx_max_abs_diff"] < 1e-4
    assert r["inputs"] == (["input_ids", "lengths", "input_ids_b", "lengths_b"] if task == "rte" else ["input_ids", "lengths"])
    for f in ("model.onnx", "model.int8.onnx", "tokenizer.json", "README.md", "export.json", "student.json"):
        assert (tmp_path / "export" / f).is_file()
    assert json.loads((tmp_path / "export" / "export.json").read_text())["int8_agreement"] >= 0.9
