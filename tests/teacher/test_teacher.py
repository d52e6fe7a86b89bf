import json

import pytest

from distillery.config import TeacherConfig
from distillery.errors import DistilleryError
from distillery.teacher.models import resolve_model
from distillery.teacher.train import load_teacher, train_teacher
from tests.conftest import make_tiny_teacher, conf

pytestmark = pytest.mark.needs_data


def test_default_teacher_resolves_offline():
    path = resolve_model("all-MiniLM-L6-v2")
    cfg = json.load(open(f"{path}/config.json"))
    assert cfg["hidden_size"] == 384 and cfg["num_hidden_layers"] == 6


def test_fine_tuned_teacher_saved_with_info(tiny_teacher):
    model, tok, info = load_teacher(tiny_teacher, n_labels=2)
    assert model.config.num_labels == 2 and info["label_names"] == ["negative", "positive"]
    assert 0.0 <= info["dev_accuracy"] <= 1.0
    assert (tiny_teacher.parent / "live" / "plots" / "metrics").is_dir()  # DVCLive curves


def test_recorded_dev_metric_is_the_saved_models_own(tiny_teacher, sst2_prepared, tmp_path, tiny_base):
    """The dev metric comes from the last epoch's evaluation (not a second pass): it must be the saved
    weights' score; a run whose last step is not an epoch's end (fractional epochs) evaluates at the end."""
    import torch

    from distillery.data.prepare import load_prepared

    dev = load_prepared(sst2_prepared).dev

    def dev_accuracy(model, tok) -> float:
        with torch.no_grad():
            logits = model(**tok(dev["text_a"].tolist(), padding=True, truncation=True, max_length=64,
                                 return_tensors="pt")).logits
        return float((logits.argmax(-1).numpy() == dev["label"].to_numpy()).mean())

    model, tok, info = load_teacher(tiny_teacher, n_labels=2)
    acc = dev_accuracy(model, tok)
    assert info["dev_accuracy"] == pytest.approx(acc, abs=1e-9)
    m = train_teacher(conf(TeacherConfig, base_model=str(tiny_base), epochs=0.5, batch_size=32, lr=1e-3, bf16=False,
                           logging_steps=5), sst2_prepared, tmp_path / "half", tmp_path / "live")
    model, tok, info = load_teacher(tmp_path / "half", n_labels=2)
    acc = dev_accuracy(model, tok)
    assert m["dev_accuracy"] == info["dev_accuracy"] == pytest.approx(acc, abs=1e-9) and m["n_dev"] == len(dev)


def test_teacher_with_other_label_count_is_refused(tmp_path, sst2_prepared):
    three = make_tiny_teacher(tmp_path / "three", num_labels=3)
    with pytest.raises(DistilleryError, match="teacher has num_labels=3 but the data has 2 labels"):
        train_teacher(conf(TeacherConfig, base_model=str(three), epochs=0), sst2_prepared, tmp_path / "t", tmp_path / "l")
    assert not (tmp_path / "t").exists()  # nothing half-written
    with pytest.raises(DistilleryError, match="config.json: teacher has num_labels=3 but the data has 2"):
        load_teacher(three, n_labels=2)


def test_bad_params():
    with pytest.raises(DistilleryError, match="param teacher.lr"):
        conf(TeacherConfig, lr=0)
    with pytest.raises(DistilleryError, match="param teacher.max_seq_len"):
        conf(TeacherConfig, max_seq_len=2)
