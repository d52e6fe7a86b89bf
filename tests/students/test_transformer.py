"""Transformer students on a tiny teacher (2 layers, hidden 32, 2 heads) built from a config."""

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from distillery.students import STUDENTS, load_student, save_student
from distillery.students.transformer import TransformerConfig, model_output

TINY_ARGS = {
    "bert": {},
    "distilbert": {},
    "pkd_skip": {"num_layers": 2},
    "pkd_last": {"num_layers": 2},
    "tinybert": {"num_layers": 2, "hidden_size": 16, "num_heads": 2},
    "mobilebert": {"num_heads": 2, "intra_size": 16, "embedding_size": 16},
}


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from conftest import make_tiny_teacher

    return make_tiny_teacher(tmp_path_factory.mktemp("t"), num_labels=2, layers=4)


def _build(family, teacher_dir, **extra):
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    cls = STUDENTS.get(family)
    cfg = TransformerConfig(vocab_size=len(tok), num_labels=2, **{**TINY_ARGS[family], **extra})
    return cls.from_teacher(cfg, teacher_dir), tok


@pytest.mark.parametrize("family", list(TINY_ARGS))
def test_shapes_features_and_round_trip(family, teacher_dir, tmp_path):
    model, tok = _build(family, teacher_dir)
    model.eval()
    c = model.config
    texts = ["a gorgeous , witty film", "dull", "it 's a bit long but mostly fun"]
    batch = model.collate(tok, texts, None, 64)
    n = batch["input_ids"].shape[1]
    logits = model(**batch).main
    assert logits.shape == (3, 2)  # (bs, num_labels)
    assert model(**batch).hidden is None  # only what is asked for
    f = model(**batch, hidden=True, scores=True)
    assert len(f.hidden) == c.num_layers + 1  # embeddings + every layer
    assert f.hidden[-1].shape == (3, n, c.hidden_size)
    assert len(f.scores) == c.num_layers and f.scores[0].shape == (3, c.num_heads, n, n)
    torch.testing.assert_close(f.main, logits)
    torch.testing.assert_close(f.mask, batch["attention_mask"])
    assert len(c.layer_map) == c.num_layers and all(1 <= x <= 4 for x in c.layer_map)
    # the saved student loads with load_student and with transformers' Auto class, same logits
    save_student(model, tok, tmp_path / "s", {"name": family})
    again, _, info = load_student(tmp_path / "s")
    torch.testing.assert_close(again(**batch).main, logits)
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    torch.testing.assert_close(hf(**batch).logits, logits)
    assert info["family"] == family


def test_layer_choices_from_the_papers(teacher_dir):
    assert _build("distilbert", teacher_dir)[0].config.init_layers == [2, 4]  # every other, ending at the top
    skip = _build("pkd_skip", teacher_dir, num_layers=3)[0].config
    assert skip.init_layers == [1, 2, 3] and skip.patient_layers == [2, 4]
    last = _build("pkd_last", teacher_dir, num_layers=3)[0].config
    assert last.init_layers == [1, 2, 3] and last.patient_layers == [2, 3]
    assert _build("tinybert", teacher_dir)[0].config.layer_map == [2, 4]  # uniform: m * N / M
    assert _build("mobilebert", teacher_dir)[0].config.layer_map == [1, 2, 3, 4]


def test_initialised_from_the_named_teacher_layers(teacher_dir):
    model, _ = _build("distilbert", teacher_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    for i, src in enumerate(model.config.init_layers):
        torch.testing.assert_close(model.hf.bert.encoder.layer[i].output.dense.weight,
                                   teacher.bert.encoder.layer[src - 1].output.dense.weight)
    torch.testing.assert_close(model.hf.classifier.weight, teacher.classifier.weight)


def test_pca_embeddings_keep_the_teachers_geometry(teacher_dir):
    model, _ = _build("tinybert", teacher_dir)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir)
    tw = teacher.bert.embeddings.word_embeddings.weight.detach()
    sw = model.hf.bert.embeddings.word_embeddings.weight.detach()
    assert sw.shape == (tw.shape[0], 16)
    # a projection onto the top principal directions keeps centred inner products' largest part
    tc, sc = tw - tw.mean(0), sw - sw.mean(0)
    assert (sc @ sc.T).trace() / (tc @ tc.T).trace() > 16 / 32


def test_scores_are_the_unnormalised_attention(teacher_dir):
    """The hooked q.k / sqrt(d) scores, softmaxed with the mask, are the model's attention probabilities."""
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    batch = dict(tok(["one two three", "x"], padding=True, return_tensors="pt"))
    f = model_output(teacher, batch, hidden=True, scores=True)
    probs = teacher(**batch, output_attentions=True).attentions
    pad = (batch["attention_mask"] == 0)[:, None, None, :]
    for s, p in zip(f.scores, probs):
        torch.testing.assert_close(torch.softmax(s.masked_fill(pad, -1e9), -1), p, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family,args,fragment", [
    ("distilbert", {"hidden_size": 16}, "init_layers needs the teacher's width"),
    ("tinybert", {"num_layers": 2, "hidden_size": 16, "num_heads": 2, "layer_map": [2, 9]}, "the teacher has layers 1..4"),
    ("pkd_skip", {"num_layers": 4}, "patient_layers [2, 4, 6] names teacher layer 6"),
    ("bert", {"init_layers": [1, 2, 3]}, "names 3 teacher layers for 2 student layers"),
    ("mobilebert", {"num_heads": 3, "intra_size": 15, "embedding_size": 16}, "must divide them"),
    ("mobilebert", {"hidden_size": 64, "num_heads": 2, "intra_size": 16}, "must be the teacher's 32"),
])
def test_refuses_a_teacher_that_does_not_fit(family, args, fragment, teacher_dir):
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    cls = STUDENTS.get(family)
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        cls.from_teacher(TransformerConfig(vocab_size=len(tok), num_labels=2, **args), teacher_dir)
    assert AutoConfig.from_pretrained(teacher_dir).num_hidden_layers == 4


def test_onnx_export_prints_no_torchvision_lines(tmp_path):
    """The dynamo exporter logs "torchvision is not installed" for every torchvision op it registers (once a process:
    so in a fresh one); export shows none of them (issue 49), and the filter is gone afterwards."""
    import subprocess
    import sys

    code = ("import logging, torch\n"
            "from distillery.students.base import dynamo_onnx\n"
            f"dynamo_onnx(torch.nn.Linear(4, 2), {{'input': torch.ones(3, 4)}}, ['logits'], r'{tmp_path / 'm.onnx'}', 17, 64)\n"
            "assert not logging.getLogger('torch.onnx._internal.exporter._registration').filters\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "m.onnx").is_file() and "torchvision" not in run.stdout + run.stderr
