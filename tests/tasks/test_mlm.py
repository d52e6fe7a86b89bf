"""Task-agnostic distillation (task mlm): the masked-LM teacher stage, general students through the one recipe
(DistilBERT's three losses, TinyBERT's general stage), their start of a task's student, and data parallelism."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from distillery.errors import DistilleryError
from tests.conftest import REPO, SHARED_DATA

CORPUS = SHARED_DATA / "corpus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="needs ../shared/data/corpus")
STUDY = yaml.safe_load((REPO / "studies" / "general" / "params.yaml").read_text(encoding="utf-8"))


def tiny_mlm(folder: Path, head: bool = True) -> Path:
    """A randomly initialised BERT (hidden 32, 2 layers) with the real tokenizer: a masked LM, or a plain encoder."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertModel

    from distillery.teacher.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    (BertForMaskedLM if head else BertModel)(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """About 12,000 tokens of real Wikipedia in rows of 32; 16 held-out rows of WikiText-2."""
    from distillery.config import from_section
    from distillery.data.corpus import CorpusConfig, prepare_corpus

    d = tmp_path_factory.mktemp("corpus")
    values = {**STUDY["prepare"], "corpus": str(CORPUS / "wikipedia" / "wiki_00"),
              "heldout": str(CORPUS / "wikitext-2" / "valid.txt"), "seq_len": 32, "max_tokens": 12000,
              "max_heldout_rows": 16}
    prepare_corpus(from_section(CorpusConfig, "prepare", values), d / "prepared", d / "prepare.json")
    return d / "prepared"


def teacher_cfg(**over):
    from distillery.config import from_section
    from distillery.teacher.mlm import MlmTeacherConfig

    return from_section(MlmTeacherConfig, "teacher", {**STUDY["teacher"], "max_rows": 64, "batch_size": 16,
                                                      "bf16": False, "logging_steps": 2, **over})


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, corpus) -> Path:
    """A plain tiny encoder given a masked-LM head by the teacher stage (train: head)."""
    from distillery.teacher.mlm import general_teacher_stage

    d = tmp_path_factory.mktemp("teacher")
    cfg = teacher_cfg(base_model=str(tiny_mlm(d / "base", head=False)), train="head")
    general_teacher_stage(cfg, corpus, d / "teacher", d / "teacher.json", d / "live")
    return d / "teacher"


def test_head_training_leaves_the_encoder_and_scores_held_out_text(teacher):
    from transformers import BertForMaskedLM, BertModel

    base = BertModel.from_pretrained(teacher.parent / "base").state_dict()
    trained = BertForMaskedLM.from_pretrained(teacher)
    assert all(torch.equal(trained.bert.state_dict()[k], v) for k, v in base.items() if not k.startswith("pooler."))
    m = json.loads((teacher.parent / "teacher.json").read_text())
    assert m["train"] == "head" and m["steps"] == 4 and 0 <= m["heldout_masked_token_accuracy"] <= 1
    assert m["trainable_params"] < 0.1 * sum(p.numel() for p in trained.parameters())


def test_a_teacher_without_a_head_and_no_head_training_is_refused(tmp_path, corpus):
    from distillery.teacher.mlm import general_teacher_stage

    base = tiny_mlm(tmp_path / "base", head=False)
    with pytest.raises(DistilleryError, match="no trained masked-LM head.*set it to head"):
        general_teacher_stage(teacher_cfg(base_model=str(base), train="none"), corpus, tmp_path / "t",
                              tmp_path / "t.json", tmp_path / "live")
    assert not (tmp_path / "t").exists()


def general_student(name: str, block: dict):
    from distillery.distill.recipe import student_config

    return student_config(name, {"max_examples": 64, "batch_size": 16, **block}, STUDY["distill"])


def run_general(tmp_path: Path, corpus: Path, teacher: Path, name: str, block: dict) -> dict:
    from distillery.distill.recipe import Paths, distill

    paths = Paths(corpus, teacher, Path(""), None, tmp_path / name, tmp_path / f"{name}.json", tmp_path / f"live_{name}")
    return distill(general_student(name, block), paths)


DISTILBERT = {"model": "distilbert", "temperature": 2.0, "losses": {"kl": 5.0, "ce": 2.0, "cosine_hidden": 1.0}}
TINYBERT = {"model": "tinybert", "losses": {"tinybert_embedding": 1.0, "tinybert_hidden": 1.0, "tinybert_attention": 1.0},
            "model_args": {"num_layers": 2, "hidden_size": 16}}


def test_distilbert_general_student_is_reproducible_and_loads_as_a_masked_lm(tmp_path, corpus, teacher):
    from transformers import AutoModel, AutoModelForMaskedLM

    m = run_general(tmp_path, corpus, teacher, "a", DISTILBERT)
    run_general(tmp_path, corpus, teacher, "b", DISTILBERT)
    a, b = (AutoModelForMaskedLM.from_pretrained(tmp_path / n).state_dict() for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same masks, order and dropout from the seed
    assert m["teacher_forward_rows"] == 64 and m["tokens_per_second"] > 0 and 0 <= m["dev_masked_token_accuracy"] <= 1
    assert type(AutoModel.from_pretrained(tmp_path / "a")).__name__ == "BertModel"
    card = (tmp_path / "a" / "README.md").read_text()  # the model card, written with the weights
    header = yaml.safe_load(card.split("---")[1])
    assert header["pipeline_tag"] == "fill-mask" and "general-distillation" in header["tags"]
    acc = header["model-index"][0]["results"][0]["metrics"][0]["value"]
    assert acc == round(m["dev_masked_token_accuracy"], 4) and f"| a | {acc:.4f} |" in card
    assert "`kl` (5)" in card and "`ce` (2)" in card and "model_args: {init_from: <this folder>}" in card


def test_tinybert_general_stage_trains_from_the_teacher_alongside(tmp_path, corpus, teacher):
    m = run_general(tmp_path, corpus, teacher, "tb", TINYBERT)
    assert m["params"] > 0 and np.isfinite(json.loads((tmp_path / "tb.json").read_text())["train_seconds"])
    card = (tmp_path / "tb" / "README.md").read_text()  # no head trained: an encoder, no masked-LM score claimed
    assert "pipeline_tag: feature-extraction" in card and "- (no trained head)" in card and "model-index" not in card


def test_a_task_student_starts_from_its_general_student(tmp_path, corpus, teacher, tiny_teacher):
    """model_args.init_from: every encoder weight from the general student; refused from a non-general folder or
    another family's general student."""
    from distillery.students import load_student
    from distillery.students.transformer import DistilBertStudent, TinyBertStudent, TransformerConfig

    run_general(tmp_path, corpus, teacher, "g", DISTILBERT)
    general = load_student(tmp_path / "g")[0].hf.base_model.state_dict()
    student = DistilBertStudent.from_teacher(TransformerConfig(num_labels=2, init_from=str(tmp_path / "g")), tiny_teacher)
    own = student.hf.base_model.state_dict()
    assert all(torch.equal(own[k], general[k]) for k in general) and set(own) - set(general) == {
        "pooler.dense.weight", "pooler.dense.bias"}
    from dataclasses import asdict

    from distillery.export.card import _architecture

    about = "\n".join(_architecture({"family": "distilbert", "config": asdict(student.config)}, {}))
    assert "From a general student**: every embedding and layer weight of `g`" in about
    assert "From the teacher" not in about  # the teacher's layers were replaced
    with pytest.raises(DistilleryError, match="a distilbert general student, and this student is tinybert"):
        TinyBertStudent.from_teacher(TransformerConfig(num_labels=2, num_layers=2, hidden_size=16,
                                                       init_from=str(tmp_path / "g")), tiny_teacher)
    with pytest.raises(DistilleryError, match="not a general student"):
        DistilBertStudent.from_teacher(TransformerConfig(num_labels=2, init_from=str(tiny_teacher)), tiny_teacher)


def test_two_processes_over_gloo_train_the_general_student_one_process_does(tmp_path, corpus, teacher):
    """torchrun, 2 CPU processes: the global batch is masked as one and split, gradients averaged: the same student
    (dropout off)."""
    block = {**DISTILBERT, "max_examples": 64, "batch_size": 16, "model_args": {"freeze_embeddings": False}}
    doc = {**STUDY, "students": {"one": block, "two": block}}
    doc["distill"] = {**STUDY["distill"], "transformer": {**STUDY["distill"]["transformer"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(teacher)
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    cfg.save_pretrained(teacher.parent / "nodrop")
    for f in teacher.iterdir():
        if f.name != "config.json":
            (teacher.parent / "nodrop" / f.name).write_bytes(f.read_bytes())
    for name, launcher in (("one", ()), ("two", ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"))):
        r = subprocess.run([sys.executable, *launcher, "-m", "stages.cli", "distill", "--name", name, "--prepared", str(corpus),
                            "--teacher", str(teacher.parent / "nodrop"), "--logits", "", "--out", str(tmp_path / name),
                            "--metrics", str(tmp_path / f"{name}.json"), "--live-dir", str(tmp_path / f"live_{name}")],
                           cwd=tmp_path, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
    from safetensors.torch import load_file

    one, two = (load_file(tmp_path / n / "model.safetensors") for n in ("one", "two"))
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs")
    assert json.loads((tmp_path / "two.json").read_text())["processes"] == 2


MOBILEBERT = {"model": "mobilebert", "losses": {"kl": 1.0, "ce": 1.0},
              "intermediate": {"progressive": True, "losses": {"mobilebert_feature_map": 1.0, "mobilebert_attention": 1.0}},
              "model_args": {"num_heads": 2, "intra_size": 16, "embedding_size": 16}}


def test_progressive_transfer_trains_one_layer_per_stage_with_the_layers_below_frozen(tmp_path, corpus, teacher):
    """MobileBERT: a stage per student layer l (feature-map and attention transfer of layer l only), layer l and, in
    the first stage, the embeddings trained, every other weight frozen; then pre-training distillation trains all."""
    from distillery.distill.recipe import Paths
    from distillery.tasks.mlm import MaskedLM

    paths = Paths(corpus, teacher, Path(""), None, tmp_path / "mb", tmp_path / "mb.json", tmp_path / "live")
    task = MaskedLM(general_student("mb", MOBILEBERT), paths, torch.device("cpu"))
    task.setup()
    assert [s.block for s in task.steps] == [1, 2, None]
    assert all(loss.ctx.layers == (s.block,) for s in task.steps[:2] for _, loss in s.losses.values())
    names = [n for n, _ in task.model.named_parameters()]
    for step in task.steps:
        task.trainable(step)
        trained = {n for n, p in task.model.named_parameters() if p.requires_grad}
        if step.block:
            layer = f".encoder.layer.{step.block - 1}."
            want = {n for n in names if layer in n or (step.block == 1 and ".embeddings." in n)}
            assert trained == want
        else:
            assert trained == set(names)
    m = run_general(tmp_path, corpus, teacher, "mobile", MOBILEBERT)
    history = json.loads((tmp_path / "mobile" / "student.json").read_text())["history"]
    assert [h["step"] for h in history] == ["intermediate_block1", "intermediate_block2", "train"]
    assert m["params"] > 0
    card = (tmp_path / "mobile" / "README.md").read_text()
    assert "1. **progressive knowledge transfer**, a stage per layer" in card and "2 stages, each 1 epoch" in card


def test_a_progressive_stage_refuses_an_output_loss(tmp_path, corpus, teacher):
    from distillery.distill.recipe import Paths
    from distillery.tasks.mlm import MaskedLM

    block = {**MOBILEBERT, "intermediate": {"progressive": True, "losses": {"kl": 1.0}}}
    paths = Paths(corpus, teacher, Path(""), None, tmp_path / "mb", tmp_path / "mb.json", tmp_path / "live")
    with pytest.raises(DistilleryError, match="intermediate.losses.kl: a progressive stage trains one layer"):
        MaskedLM(general_student("mb", block), paths, torch.device("cpu")).setup()


@pytest.mark.parametrize("block, kill_after", [({**DISTILBERT, "epochs": 2}, 6), (MOBILEBERT, 5)],
                         ids=["distilbert-epoch2", "mobilebert-progressive-stage2"])
def test_a_killed_run_resumes_to_the_weights_of_a_run_never_stopped(tmp_path, corpus, teacher, monkeypatch, block,
                                                                    kill_after):
    """The run's state saved after every step (--checkpoint-minutes tiny); killed mid-epoch (DistilBERT: in its
    second epoch; MobileBERT: in its second progressive stage); run again: it resumes and ends with the weights and
    curves of a run that was never stopped, and leaves no checkpoint behind."""
    from distillery.distill.recipe import Paths, Recipe, distill

    def paths(name):
        return Paths(corpus, teacher, Path(""), None, tmp_path / name, tmp_path / f"{name}.json", tmp_path / f"live_{name}")

    whole = distill(general_student("s", block), paths("whole"))
    real, calls = Recipe.update, [0]

    def update_then_die(self, *a):
        if calls[0] == kill_after:
            raise KeyboardInterrupt
        calls[0] += 1
        return real(self, *a)

    monkeypatch.setattr(Recipe, "update", update_then_die)
    with pytest.raises(KeyboardInterrupt):
        distill(general_student("s", block), paths("resumed"), checkpoint_minutes=1e-9)
    state = tmp_path / ".resumed.resume" / "state.pt"
    assert state.is_file() and not (tmp_path / "resumed").exists()
    monkeypatch.setattr(Recipe, "update", real)
    resumed = distill(general_student("s", block), paths("resumed"), checkpoint_minutes=1e-9)
    from safetensors.torch import load_file

    a, b = (load_file(tmp_path / n / "model.safetensors") for n in ("whole", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    hist = [json.loads((tmp_path / n / "student.json").read_text())["history"] for n in ("whole", "resumed")]
    assert hist[0] == hist[1] and resumed["dev_masked_token_accuracy"] == whole["dev_masked_token_accuracy"]
    assert not state.parent.exists()  # cleared once the student is saved
