"""The user's own files (issue 31): CSV with any delimiter, TSV, JSON Lines, Parquet and a local Hugging Face
dataset read by column names; labels from the training split or fixed by a param; GLUE presets as params;
every broken file a one-line error naming the file and line. Real samples: Emotion (`;`, 6 labels) and TREC
(CSV, 50 fine labels). A 5-class CSV through the real DAG: tests/integration/test_own_data_dag.py."""

import json

import pandas as pd
import pytest

from distillery.config import PrepareConfig
from distillery.data.prepare import load_prepared, prepare
from distillery.errors import DistilleryError
from tests.conftest import SHARED_DATA, conf

pytestmark = pytest.mark.needs_data

EMOTION = SHARED_DATA / "text-classification" / "emotion"
TREC = SHARED_DATA / "text-classification" / "trec"


def own(**kw) -> PrepareConfig:
    base = {"task": "mine", "data_dir": None, "max_train": 0, "max_dev": 0}
    return conf(PrepareConfig, **{**base, **kw})


def test_emotion_semicolon_file_with_its_six_labels(tmp_path):
    cfg = own(task="emotion", train_file=str(EMOTION / "train.txt"), dev_file=str(EMOTION / "val.txt"), delimiter=";",
              text_column="text", label_column="label_name", metrics=("macro_f1",))
    info = prepare(cfg, tmp_path / "p")
    assert info["label_names"] == ["anger", "fear", "joy", "love", "sadness", "surprise"]  # sorted, as task.json says
    prep = load_prepared(tmp_path / "p")
    assert prep.num_labels == 6 and prep.task.metric == "macro_f1" and not prep.task.is_pair
    assert len(prep.dev) == 2000 and prep.counts["train"]["rows_read"] == 16000
    first = prep.dev.iloc[0]
    assert first["text_a"].startswith("im feeling quite sad") and prep.label_names[first["label"]] == "sadness"


def test_trec_fine_labels_and_a_fixed_order(tmp_path):
    cfg = own(task="trec", train_file=str(TREC / "train.csv"), dev_file=str(TREC / "test.csv"),
              text_column="text", label_column="fine_label")
    prepare(cfg, tmp_path / "p")
    prep = load_prepared(tmp_path / "p")
    assert prep.num_labels == 50 and prep.label_names[:2] == ["ABBR:abb", "ABBR:exp"]
    assert prep.dev.iloc[1]["text_a"] == "What county is Modesto , California in ?"  # CSV quoting undone
    order = ("NUM", "LOC", "HUM", "ENTY", "DESC", "ABBR")
    prepare(own(task="trec", train_file=str(TREC / "train.csv"), dev_file=str(TREC / "test.csv"),
                text_column="text", label_column="coarse_label", labels=order), tmp_path / "q")
    q = load_prepared(tmp_path / "q")
    assert tuple(q.label_names) == order and q.label_names[q.dev.iloc[0]["label"]] == "NUM"


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "tsv"])
def test_jsonl_parquet_and_tsv_read_the_same_rows(tmp_path, fmt):
    frame = pd.read_csv(TREC / "train.csv").head(60)
    dev = pd.read_csv(TREC / "test.csv").head(20)
    paths = {}
    for name, f in (("train", frame), ("dev", dev)):
        p = tmp_path / f"{name}.{fmt}"
        if fmt == "jsonl":
            f.to_json(p, orient="records", lines=True)
        elif fmt == "parquet":
            f.to_parquet(p)
        else:
            f.to_csv(p, sep="\t", index=False)
        paths[name] = p
    prepare(own(train_file=str(paths["train"]), dev_file=str(paths["dev"]), text_column="text",
                label_column="coarse_label"), tmp_path / "p")
    prep = load_prepared(tmp_path / "p")
    assert prep.dev["text_a"].tolist() == [" ".join(t.split()) for t in dev["text"]]
    assert [prep.label_names[i] for i in prep.dev["label"]] == dev["coarse_label"].tolist()


def _files(tmp_path, train: str, dev: str = "text,label\nfine,a\n"):
    (tmp_path / "train.csv").write_text(train, encoding="utf-8")
    (tmp_path / "dev.csv").write_text(dev, encoding="utf-8")
    return own(train_file=str(tmp_path / "train.csv"), dev_file=str(tmp_path / "dev.csv"), text_column="text",
               label_column="label")


@pytest.mark.parametrize("train,dev,expect", [
    ("txt,label\na,x\nb,y\n", "text,label\nfine,x\n", r"train\.csv: no column 'text' \(param prepare\.text_column\); "
     r"it has: txt, label"),
    ("text,label\na,x\nb,y,z\n", "text,label\nfine,x\n", r"train\.csv:3: 3 fields where the header has 2"),
    ("text,label\na,x\nb,x\n", "text,label\nfine,x\n", r"train\.csv: the label column has one class \('x'\)"),
    ("text,label\na,x\nb,\n", "text,label\nfine,x\n", r"train\.csv:3: empty label in column 'label'"),
    ("text,label\na,x\n  ,y\n", "text,label\nfine,x\n", r"train\.csv:3: empty text"),
    ("text,label\na,x\nb,y\n", "text,label\nfine,x\nok,z\n", r"dev\.csv:3: label 'z' does not occur in the training "
     r"split \(labels: x, y\)"),
])
def test_broken_files_name_file_and_line(tmp_path, train, dev, expect):
    with pytest.raises(DistilleryError, match=expect):
        prepare(_files(tmp_path, train, dev), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_integer_labels_sort_as_numbers_and_a_fixed_list_must_cover_training(tmp_path):
    cfg = _files(tmp_path, "text,label\na,10\nb,2\nc,1\n", "text,label\nfine,2\n")
    assert prepare(cfg, tmp_path / "p")["label_names"] == ["1", "2", "10"]
    with pytest.raises(DistilleryError, match=r"train\.csv:2: label '10' is not in prepare\.labels \(1, 2\)"):
        prepare(conf(PrepareConfig, **{**cfg.__dict__, "labels": (1, 2)}), tmp_path / "q")


@pytest.mark.parametrize("override,expect", [
    ({"dev_file": "t.csv"}, "param prepare.dev_file: names the same file as another split"),
    ({"metrics": ("auc",)}, "param prepare.metrics: 'auc' does not score a classification task; use accuracy, "
                            "macro_f1, f1, mcc"),
    ({"metrics": ("pearson",)}, "param prepare.metrics: 'pearson' does not score a classification task"),
    ({"problem": "regression", "metrics": ("accuracy",)}, "'accuracy' does not score a regression task; use "
                                                           "pearson, spearman"),
    ({"problem": "regression", "labels": ("a", "b")}, "param prepare.labels: a regression task has no label set"),
    ({"problem": "ranking"}, "param prepare.problem: must be one of classification, regression"),
    ({"label_names": ("x", "y")}, "param prepare.label_names: must give one distinct name for each of prepare.labels"),
    ({"columns": ("text",)}, "param prepare.columns: must name at least two distinct columns"),
    ({"hf_dataset": "x"}, "param prepare.data_dir: give exactly one of"),
    ({"task": "a/b"}, "param prepare.task \\(your task's name\\): 'a/b' is not a plain name"),
])
def test_own_data_params_are_checked(tmp_path, override, expect):
    base = {"train_file": "t.csv", "dev_file": "d.csv", "text_column": "text", "label_column": "label"}
    with pytest.raises(DistilleryError, match=expect):
        own(**{**base, **override})


def test_a_preset_fills_only_what_is_unset_and_a_dataset_refuses_file_settings():
    cfg = conf(PrepareConfig, task="mrpc", data_dir="x", metrics=("accuracy",))
    assert cfg.metrics == ("accuracy",) and cfg.text_column == "#1 String" and cfg.labels == ("0", "1")
    hub = conf(PrepareConfig, task="rte", data_dir=None, hf_dataset="nyu-mll/glue")
    assert (hub.hf_config, hub.text_pair_column, hub.labels, hub.train_file) == ("rte", "sentence2", ("0", "1"), None)
    with pytest.raises(DistilleryError, match=r"param prepare\.format: reads files; with prepare\.hf_dataset"):
        conf(PrepareConfig, data_dir=None, hf_dataset="x", format="csv")


def test_macro_f1_against_hand_values():
    import numpy as np

    from distillery.metrics import task_metric

    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    # class 0: P 1/2 R 1/2 F1 .5; class 1: P 2/3 R 1 F1 .8; class 2: P 1 R 1/2 F1 2/3 -> mean 0.65556
    assert task_metric("macro_f1", y, p) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert json.dumps(task_metric("accuracy", y, p)) == json.dumps(4 / 6)


@pytest.mark.parametrize("task,folder,cols,labels", [
    ("rte", "RTE", ("sentence1", "sentence2", "label"), ("entailment", "not_entailment")),
    ("sst2", "SST-2", ("sentence", None, "label"), None),
])
def test_a_glue_task_read_as_own_tsv_equals_the_glue_reader(tmp_path, task, folder, cols, labels):
    """SST-2's and RTE's files read as your own TSV (columns by name; RTE with a second text column) give the
    GLUE reader's rows: the same ids, texts and label ids. A GLUE task is just a TSV with a header."""
    from tests.conftest import GLUE

    glue = tmp_path / "glue"
    prepare(conf(PrepareConfig, task=task, data_dir=str(GLUE / folder), max_train=0, max_dev=0), glue)
    mine = tmp_path / "mine"
    prepare(own(task=f"{task}_own", data_dir=str(GLUE / folder), train_file="train.tsv", dev_file="dev.tsv",
                text_column=cols[0], text_pair_column=cols[1], label_column=cols[2], labels=labels), mine)
    a, b = load_prepared(glue), load_prepared(mine)
    assert b.task.is_pair == a.task.is_pair and b.num_labels == a.num_labels
    for split in ("train", "dev"):
        x, y = getattr(a, split), getattr(b, split)
        assert x[["id", "text_a", "text_b", "label"]].equals(y[["id", "text_a", "text_b", "label"]])


def test_a_local_hugging_face_dataset_folder_with_named_columns(tmp_path):
    """prepare.hf_dataset takes a folder of data files (what `datasets.load_dataset` reads offline) with the same
    column params as files; its splits are named by prepare.train_split / prepare.dev_split."""
    folder = tmp_path / "hub"
    folder.mkdir()
    frame = pd.read_csv(TREC / "train.csv").head(80)
    frame.head(60).to_csv(folder / "train.csv", index=False)
    frame.tail(20).to_csv(folder / "validation.csv", index=False)
    cfg = own(data_dir=None, hf_dataset=str(folder), text_column="text", label_column="coarse_label")
    info = prepare(cfg, tmp_path / "p")
    prep = load_prepared(tmp_path / "p")
    assert info["source"] == f"hf:{folder}" and len(prep.train) == len(frame.head(60).drop_duplicates("text"))
    assert prep.dev["text_a"].tolist() == [" ".join(t.split()) for t in frame.tail(20)["text"]]
    assert prep.label_names == sorted(set(frame.head(60)["coarse_label"]))
    with pytest.raises(DistilleryError, match=r"dataset .* split train: no column 'question' \(param "
                                              r"prepare\.text_column\); it has: text, coarse_label, fine_label"):
        prepare(own(data_dir=None, hf_dataset=str(folder), text_column="question", label_column="coarse_label"),
                tmp_path / "q")


def test_the_readme_walk_through_prepares_emotion_as_written(tmp_path):
    """README "Your own data": its `prepare:` block, as written (paths relative to the repository), reads
    Emotion's 6 labels with macro-F1 first and accuracy second."""
    import yaml

    from distillery.config import from_section
    from tests.conftest import REPO, readme_block

    block = yaml.safe_load(readme_block("## Your own data", "yaml"))["prepare"]
    block["data_dir"] = str((REPO / block["data_dir"]).resolve())
    info = prepare(from_section(PrepareConfig, "prepare", block), tmp_path / "p")
    assert info["label_names"] == ["anger", "fear", "joy", "love", "sadness", "surprise"]
    assert info["metrics"] == ["macro_f1", "accuracy"] and info["n_dev"] == 2000
