import pytest

import pandas as pd

from pathlib import Path

from distillery.data.files import read_split, with_ids
from distillery.data.glue import merge_duplicates
from distillery.data.table import write_table
from distillery.data.ids import text_id
from distillery.data.tasks import preset_params
from distillery.errors import DistilleryError
from tests.conftest import GLUE, conf

pytestmark = pytest.mark.needs_data


def read_glue_tsv(path, task: str):
    """One split read as `prepare` reads a GLUE preset's file (the preset's params, its fixed labels)."""
    p = preset_params(task, "files")
    raw = read_split(Path(path), p["format"], None, p["text_column"], p.get("text_pair_column"), p["label_column"],
                     p.get("columns"))
    return with_ids(raw, list(p["labels"]), str(path), fixed=True)


@pytest.mark.parametrize("task,folder", [("sst2", "SST-2"), ("cola", "CoLA"), ("mrpc", "MRPC"), ("rte", "RTE")])
def test_presets_read_what_a_plain_split_on_tabs_reads(task, folder):
    """The presets are params, not code: each one reads every row of GLUE's file as splitting it on tabs does."""
    p = preset_params(task, "files")
    for split in ("train", "dev"):
        lines = (GLUE / folder / f"{split}.tsv").read_text(encoding="utf-8-sig").splitlines()
        header = p.get("columns") or lines[0].split("\t")
        body = lines[0 if p.get("columns") else 1:]
        col = {c: header.index(c) for c in header}
        frame = read_glue_tsv(GLUE / folder / f"{split}.tsv", task)
        assert len(frame) == len(body)
        fields = [ln.split("\t") for ln in body]
        assert frame["text_a"].tolist() == [f[col[p["text_column"]]].strip() for f in fields]
        assert frame["label"].tolist() == [list(p["labels"]).index(f[col[p["label_column"]]].strip()) for f in fields]
        if p.get("text_pair_column"):
            assert frame["text_b"].tolist() == [f[col[p["text_pair_column"]]].strip() for f in fields]


@pytest.mark.parametrize("task,folder,n_dev", [("sst2", "SST-2", 872), ("cola", "CoLA", 1043),
                                                ("mrpc", "MRPC", 408), ("rte", "RTE", 277)])
def test_reads_every_real_dev_split(task, folder, n_dev):
    frame = read_glue_tsv(GLUE / folder / "dev.tsv", task)
    assert len(frame) == n_dev  # every row, repeated texts included
    assert frame["row"].is_unique and frame["row"].is_monotonic_increasing
    assert set(frame["label"]) == {0, 1}
    assert (frame["text_a"].str.len() > 0).all()
    assert bool(preset_params(task, "files").get("text_pair_column")) == (frame["text_b"] != "").all()
    row = frame.iloc[0]
    assert row["id"] == text_id(row["text_a"], row["text_b"])


def test_rte_labels_are_mapped_by_name():
    frame = read_glue_tsv(GLUE / "RTE" / "dev.tsv", "rte")
    first = (GLUE / "RTE" / "dev.tsv").read_text().splitlines()[1].split("\t")
    assert frame.iloc[0]["label"] == ["entailment", "not_entailment"].index(first[3])


def _write(tmp_path, text):
    p = tmp_path / "train.tsv"
    p.write_text(text, encoding="utf-8")
    return p


def test_ragged_row_names_file_and_line(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\nbad\tfilm\t0\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:3: 3 fields where the header has 2"):
        read_glue_tsv(p, "sst2")


def test_missing_column(tmp_path):
    p = _write(tmp_path, "text\tlabel\ngood film\t1\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv: no column 'sentence' \(param prepare.text_column\); it has: text, label"):
        read_glue_tsv(p, "sst2")


def test_empty_text(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\n  \t0\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:3: empty text"):
        read_glue_tsv(p, "sst2")


def test_label_outside_label_set(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\nmeh\t2\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:3: label '2' is not in prepare.labels \(0, 1\)"):
        read_glue_tsv(p, "sst2")


def test_unknown_task():
    from distillery.config import PrepareConfig

    with pytest.raises(DistilleryError, match=r"param prepare.task: unknown task 'qqqp': not a GLUE preset"):
        conf(PrepareConfig, task="qqqp")


def test_reader_keeps_every_row_in_order(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\ngood film\t0\nbad\t0")  # no final newline
    frame = read_glue_tsv(p, "sst2")
    assert frame["text_a"].tolist() == ["good film", "good film", "bad"] and frame["row"].tolist() == [2, 3, 4]


@pytest.mark.parametrize("rule,labels,kept", [("majority", [1, 0], {1: 1}), ("first", [0, 0], {0: 1}),
                                              ("drop", [0], {})])
def test_merge_duplicates_rules(tmp_path, rule, labels, kept):
    # "good film": 0, 1, 1 (majority 1, first 0); "bad": 0 twice (an exact repeat, merged under every rule)
    p = _write(tmp_path, "sentence\tlabel\ngood film\t0\nbad\t0\ngood film\t1\nbad\t0\ngood film\t1\n")
    frame, report = merge_duplicates(read_glue_tsv(p, "sst2"), rule)
    assert frame["label"].tolist() == labels
    assert frame["text_a"].tolist() == (["good film", "bad"] if rule != "drop" else ["bad"])
    assert report == {"rows_read": 5, "rows_kept": len(labels), "exact_duplicates_merged": 1, "conflicting_texts": 1,
                      "conflicting_rows": 3, "conflict_rule": rule, "conflict_labels_kept": kept}


def test_bare_cr_line_endings_are_named(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\rgood film\t1\rbad\t0\r")
    with pytest.raises(DistilleryError, match=r"train\.tsv: lines end in a bare CR"):
        read_glue_tsv(p, "sst2")


def test_invalid_utf8_names_line_and_byte(tmp_path):
    p = tmp_path / "train.tsv"
    p.write_bytes(b"sentence\tlabel\ngood film\t1\nbad \xff film\t0\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:3: byte 31 \(0xff\) is not valid UTF-8"):
        read_glue_tsv(p, "sst2")


AWKWARD = [
    "a carriage\rreturn inside",
    'bare "quotes" and \'single\' ones, "unbalanced',
    "non-ASCII: caf\u00e9 \u00fcber \u65e5\u672c\u8a9e \U0001f600 \u2028 separator",
    "x" * 20000,
    "trailing backslash \\",
    "# not a comment",
]


def test_awkward_text_round_trips_through_every_stage_reader(tmp_path):
    """Whatever prepare accepts is read back identically by load_prepared (and so by every later stage)."""
    from distillery.config import PrepareConfig
    from distillery.data.glue import clean_text
    from distillery.data.prepare import load_prepared, prepare

    src = tmp_path / "glue"
    src.mkdir()
    body = "".join(f"{t}\t{i % 2}\r\n" for i, t in enumerate(AWKWARD))  # CRLF line endings too
    (src / "train.tsv").write_text("sentence\tlabel\r\n" + body, encoding="utf-8")
    (src / "dev.tsv").write_text("sentence\tlabel\n" + body.replace("\r\n", "\n"), encoding="utf-8")
    prepare(conf(PrepareConfig, task="sst2", data_dir=str(src)), tmp_path / "out")
    prep = load_prepared(tmp_path / "out")
    train, dev = prep.train, prep.dev
    expect = [clean_text(t) for t in AWKWARD]
    assert train["text_a"].tolist() == expect and dev["text_a"].tolist() == expect
    assert expect[0] == "a carriage return inside" and expect[3] == "x" * 20000
    # a pair task: a tab inside a Hugging Face text becomes a space, never a column
    frame = pd.DataFrame({"id": ["1"], "text_a": ["a\tb"], "text_b": ["c"], "label": [0]})
    with pytest.raises(DistilleryError, match="holds a tab or line break"):
        write_table(frame, tmp_path / "t.tsv")


def test_cola_dev_is_prepared_and_scored_whole(tmp_path, tiny_base):
    """GLUE's CoLA dev has 1,043 rows (4 texts twice): all are prepared and the teacher is scored on all."""
    from distillery.config import PrepareConfig, TeacherConfig
    from distillery.data.prepare import load_prepared, prepare
    from distillery.io import read_json
    from distillery.teacher.train import train_teacher

    info = prepare(conf(PrepareConfig, task="cola", data_dir=str(GLUE / "CoLA"), max_train=200), tmp_path / "p",
                   tmp_path / "prepare.json")
    m = read_json(tmp_path / "prepare.json")
    assert m["dev"] == {"rows_read": 1043, "rows_kept": 1043, "distinct_texts": 1039}
    assert m["train"]["rows_read"] == 8551 and m["train"]["rows_kept"] == 200
    assert info["n_dev"] == 1043
    dev = load_prepared(tmp_path / "p").dev
    assert len(dev) == 1043 and dev["row"].is_unique
    r = train_teacher(conf(TeacherConfig, base_model=str(tiny_base), epochs=0, bf16=False), tmp_path / "p",
                      tmp_path / "t", tmp_path / "live")
    assert r["n_dev"] == 1043
