import pytest

from distillery.data.glue import read_glue_tsv
from distillery.data.ids import text_id
from distillery.data.tasks import TASKS, get_task
from distillery.errors import DistilleryError
from tests.conftest import GLUE

pytestmark = pytest.mark.needs_data


@pytest.mark.parametrize("task,folder,n_dev", [("sst2", "SST-2", 872), ("cola", "CoLA", 1043),
                                                ("mrpc", "MRPC", 408), ("rte", "RTE", 277)])
def test_reads_every_real_dev_split(task, folder, n_dev):
    frame = read_glue_tsv(GLUE / folder / "dev.tsv", TASKS[task])
    assert len(frame) <= n_dev and len(frame) > 0.98 * n_dev  # a few duplicate texts are dropped
    assert set(frame["label"]) == {0, 1}
    assert (frame["text_a"].str.len() > 0).all()
    assert TASKS[task].is_pair == (frame["text_b"] != "").all()
    row = frame.iloc[0]
    assert row["id"] == text_id(row["text_a"], row["text_b"])


def test_rte_labels_are_mapped_by_name():
    frame = read_glue_tsv(GLUE / "RTE" / "dev.tsv", TASKS["rte"])
    first = (GLUE / "RTE" / "dev.tsv").read_text().splitlines()[1].split("\t")
    assert frame.iloc[0]["label"] == TASKS["rte"].raw_labels.index(first[3])


def _write(tmp_path, text):
    p = tmp_path / "train.tsv"
    p.write_text(text, encoding="utf-8")
    return p


def test_ragged_row_names_file_and_line(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\nbad\tfilm\t0\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:3: expected 2 tab-separated columns, found 3"):
        read_glue_tsv(p, TASKS["sst2"])


def test_missing_column(tmp_path):
    p = _write(tmp_path, "text\tlabel\ngood film\t1\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:1: missing column 'sentence'"):
        read_glue_tsv(p, TASKS["sst2"])


def test_empty_text(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\n  \t0\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:3: empty text"):
        read_glue_tsv(p, TASKS["sst2"])


def test_label_outside_label_set(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\nmeh\t2\n")
    with pytest.raises(DistilleryError, match=r"train\.tsv:3: label '2' is not one of task sst2's labels"):
        read_glue_tsv(p, TASKS["sst2"])


def test_unknown_task():
    with pytest.raises(DistilleryError, match=r"unknown task 'qqqp' \(param prepare.task\)"):
        get_task("qqqp")


def test_duplicates_keep_first(tmp_path):
    p = _write(tmp_path, "sentence\tlabel\ngood film\t1\ngood film\t0\nbad\t0")  # no final newline
    frame = read_glue_tsv(p, TASKS["sst2"])
    assert frame["text_a"].tolist() == ["good film", "bad"] and frame["label"].tolist() == [1, 0]
