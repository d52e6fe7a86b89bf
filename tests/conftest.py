"""Shared fixtures: real data samples from ../shared/data and tiny models built from configs."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
GLUE = SHARED_DATA / "glue"


def pytest_collection_modifyitems(config, items):
    # the `dvc repro` tests first: under `--dist loadgroup` (pyproject's addopts) each of the two longest tests
    # starts on its own worker at once, and the short ones fill in around them
    items.sort(key=lambda item: "integration" not in item.keywords)
    if not GLUE.is_dir():
        skip = pytest.mark.skip(reason=f"{GLUE} not found: tests read the real GLUE samples from ../shared/data")
        for item in items:
            if "needs_data" in item.keywords or "integration" in item.keywords:
                item.add_marker(skip)


def make_tiny_teacher(path: Path, num_labels: int | None = None, layers: int = 2, hidden: int = 32) -> Path:
    """A randomly initialised BERT (hidden 32) with the real all-MiniLM-L6-v2 tokenizer, saved like a checkpoint."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    from distillery.teacher.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    if num_labels is None:
        model = BertModel(cfg)
    else:
        cfg.num_labels = num_labels
        model = BertForSequenceClassification(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return make_tiny_teacher(tmp_path_factory.mktemp("tiny_base"))


@pytest.fixture(scope="session")
def sst2_prepared(tmp_path_factory) -> Path:
    """300 real SST-2 training sentences and 100 dev sentences, prepared."""
    from distillery.config import PrepareConfig
    from distillery.data.prepare import prepare

    out = tmp_path_factory.mktemp("prep") / "prepared"
    prepare(conf(PrepareConfig, task="sst2", data_dir=str(GLUE / "SST-2"), max_train=300, max_dev=100), out)
    return out


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory, tiny_base, sst2_prepared) -> Path:
    """The tiny base fine-tuned for a few steps on the SST-2 sample by the real `teacher` stage."""
    from distillery.config import TeacherConfig
    from distillery.teacher.train import train_teacher

    d = tmp_path_factory.mktemp("teacher")
    train_teacher(conf(TeacherConfig, base_model=str(tiny_base), epochs=1, batch_size=32, lr=1e-3, bf16=False,
                                logging_steps=5), sst2_prepared, d / "teacher", d / "live")
    return d / "teacher"


def repo_params() -> dict:
    """The repository's params.yaml: the one place where defaults are written."""
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def make_student(name: str, **block):
    """A StudentConfig as `distillery distill` builds it: `block` on the family defaults of params.yaml."""
    from distillery.distill.recipe import student_config

    return student_config(name, block, repo_params()["distill"])


def write_params(folder: Path, students: dict | None = None, **sections) -> Path:
    """A params.yaml in `folder`: the repository's (no stored [CLS] layers: the tiny teachers have 2),
    with these students and these sections instead."""
    import yaml

    doc = repo_params()
    doc["soft_labels"]["features"] = []
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump({**doc, "students": students or {}, **sections}), encoding="utf-8")
    return path


SECTIONS = {"PrepareConfig": "prepare", "TeacherConfig": "teacher", "AugmentConfig": "augment",
            "SoftLabelConfig": "soft_labels", "EvaluateConfig": "evaluate", "ExportConfig": "export"}


def conf(cls, **overrides):
    """A stage config as its command builds it: the section of the repository's params.yaml, then overrides."""
    from distillery.config import from_section

    section = SECTIONS[cls.__name__]
    base = repo_params()[section]
    if section == "soft_labels":
        base["features"] = []  # the pipeline's [CLS] layers fit the 6-layer teacher, not the tiny ones
    return from_section(cls, section, {**base, **overrides})


def readme_block(heading: str, lang: str = "bash") -> str:
    """The first ```<lang> block after a README heading: what a user copies from it."""
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)
