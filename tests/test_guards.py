"""Issue 48: nothing lost, round two. One test (or a few) per numbered item of the issue; each failed on the main of
2026-12-07 (4738be7). `bench/fault_table.py` runs the same cases through the command and tabulates them
(docs/reliability.md)."""

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from distillery.errors import DistilleryError
from tests.conftest import GLUE, REPO, write_params
from tests.test_reliability import cli, one_line, prepare_args, tree

pytestmark = pytest.mark.needs_data


# ------------------------------------------------------------- 1. --metrics replaces only its own stage's metrics
@pytest.mark.parametrize("target", ["params.yaml", "d/dev.csv", "notes.md", "other.json"])
def test_metrics_never_overwrites_a_users_file(tmp_path, target):
    write_params(tmp_path)
    (tmp_path / "d").mkdir()
    shutil.copy(GLUE / "SST-2" / "dev.tsv", tmp_path / "d" / "dev.csv")
    (tmp_path / "notes.md").write_text("my notes")
    (tmp_path / "other.json").write_text('{"my": "config"}')
    before = tree(tmp_path)
    line = one_line(cli(*prepare_args("out", metrics=target), cwd=tmp_path))
    assert line.startswith(f"error: --metrics {target}: exists and is ") and "nothing was changed" in line
    assert tree(tmp_path) == before and not (tmp_path / "out").exists()


def test_metrics_replaces_its_own_but_not_another_stages(tmp_path):
    assert cli(*prepare_args("p", metrics="m.json"), cwd=tmp_path).returncode == 0
    assert json.loads((tmp_path / "m.json").read_text())["written_by"] == "distillery prepare"
    assert cli(*prepare_args("p", metrics="m.json"), cwd=tmp_path).returncode == 0  # its own: replaced
    (tmp_path / "t.json").write_text(json.dumps({"metric": "accuracy", "written_by": "distillery teacher"}))
    line = one_line(cli(*prepare_args("p2", metrics="t.json"), cwd=tmp_path))
    assert "is the metrics of distillery teacher, not of distillery prepare" in line


def test_metrics_made_before_the_mark_are_known_by_dvcs_lock(tmp_path):
    """A committed metrics file from before `written_by` is replaced where dvc.lock says that stage wrote it."""
    write_params(tmp_path)
    (tmp_path / "m.json").write_text('{"task": "sst2"}')
    (tmp_path / "t.json").write_text('{"metric": "accuracy"}')
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "prepare": {"cmd": "distillery prepare --out p --metrics m.json", "outs": [{"path": "m.json"}]},
        "teacher": {"cmd": "distillery teacher --metrics t.json", "outs": [{"path": "t.json"}]}}}))
    assert cli(*prepare_args("p", metrics="m.json"), cwd=tmp_path).returncode == 0
    line = one_line(cli(*prepare_args("p2", metrics="t.json"), cwd=tmp_path))
    assert "is the metrics of distillery teacher" in line and (tmp_path / "t.json").read_text() == '{"metric": "accuracy"}'


def test_metrics_not_written_for_lack_of_room_says_what_was(tmp_path, monkeypatch):
    """14: the output is in place when its metrics fail to write: the message says so instead of 'nothing'."""
    from distillery import io

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io.os, "fsync", full)
    with pytest.raises(DistilleryError) as e:
        io.write_metrics(tmp_path / "m.json", {"a": 1}, "soft-labels", written=tmp_path / "logits")
    msg = str(e.value)
    assert f"{tmp_path / 'logits'} is written and complete; only its metrics" in msg and "nothing was" not in msg
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- 2. evaluate claims its output folder
@pytest.mark.parametrize("out", ["report", ".", "table.txt"])
def test_evaluate_out_is_claimed_before_any_work(tmp_path, out):
    write_params(tmp_path, {"s": {"model": "bilstm", "losses": {"ce": 1}}})
    (tmp_path / "report").mkdir()
    for f in ("table.md", "summary.json", "notes.txt"):
        (tmp_path / "report" / f).write_text("the user's")
    (tmp_path / "table.txt").write_text("the user's")
    before = tree(tmp_path)
    line = one_line(cli("evaluate", "--out", out, cwd=tmp_path))
    assert line.startswith(f"error: --out {out}: ") and "choose another folder" in line
    assert tree(tmp_path) == before


def test_committed_evaluate_folders_carry_their_marker():
    """The repository's evaluate outputs (committed to git) are evaluate's, so a re-run by hand may replace them."""
    from distillery.io import claim_output

    folders = [p for p in REPO.glob("**/metrics/eval") if ".git" not in p.parts]
    assert folders
    for f in folders:
        claim_output(f, "evaluate")


# --------------------------------------------------------- 3. a live folder is checked below its top level too
@pytest.mark.parametrize("marked", [False, True])
def test_live_dir_with_a_users_file_among_the_curves_is_refused(tmp_path, marked):
    from distillery.io import MARKER

    live = tmp_path / "results"
    (live / "plots" / "metrics" / "dev").mkdir(parents=True)
    (live / "plots" / "metrics" / "dev" / "accuracy.tsv").write_text("step\taccuracy\n0\t0.5\n")
    (live / "metrics.json").write_text("{}")
    if marked:
        (live / MARKER).write_text(json.dumps({"stage": "live", "files": ["metrics.json", "plots"]}))
    write_params(tmp_path, {"s": {"model": "bilstm", "losses": {"ce": 1}}})
    assert cli("distill", "--name", "s", "--live-dir", "results", "--prepared", "none", cwd=tmp_path).stderr.count(
        "--live-dir") == 0  # DVCLive's own layout is accepted (the run then stops on the missing data)
    (live / "plots" / "fig1.svg").write_text("<svg/>")
    (live / "plots" / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    line = one_line(cli("distill", "--name", "s", "--live-dir", "results", cwd=tmp_path))
    assert line.startswith("error: --live-dir results: holds files distillery live did not write (plots/fig1.svg")
    assert tree(tmp_path) == before


# ---------------------------------------------------------------- 4. a student key that would be a path
@pytest.mark.parametrize("key", ["../teacher", "a/b", ".hidden", "x y"])
@pytest.mark.parametrize("command", [["prepare"], ["teacher"], ["evaluate"], ["distill", "--name", "ok"]])
def test_path_like_student_keys_are_refused_by_every_command(tmp_path, key, command):
    write_params(tmp_path, {"ok": {"model": "bilstm", "losses": {"ce": 1}}, key: {"model": "bilstm"}})
    before = tree(tmp_path)
    line = one_line(cli(*command, cwd=tmp_path))
    assert line.startswith(f"error: param students.{key} in params.yaml") and "is not a plain name" in line
    assert tree(tmp_path) == before


# ------------------------------------------------- 5. a resume notices inputs that changed under the same paths
def test_resume_key_follows_the_inputs_contents(tmp_path, capsys, monkeypatch):
    from distillery.distill.checkpoint import Checkpoint
    from distillery.tasks.base import Paths
    from tests.conftest import make_student

    for d in ("prepared", "teacher", "logits", "augmented"):
        (tmp_path / d).mkdir()
    (tmp_path / "prepared" / "train.tsv").write_text("id\ttext\n")
    (tmp_path / "teacher" / "model.safetensors").write_bytes(b"weights one")
    (tmp_path / "logits" / "manifest.json").write_text('{"fingerprint": "aaa"}')
    paths = Paths(tmp_path / "prepared", tmp_path / "teacher", tmp_path / "logits", tmp_path / "augmented",
                  tmp_path / "out", tmp_path / "m.json", tmp_path / "live")
    cfg = make_student("s", model="bilstm", losses={"ce": 1})
    Checkpoint(cfg, paths, 1, 10).save({"step": 3, "epoch": 1, "batch": 2})
    assert Checkpoint(cfg, paths, 1, 10).load()["step"] == 3  # nothing changed: resumes
    no_aug = dataclasses.replace(paths, augmented=Path(""))  # `--augmented ''`: no augmented input, not the working folder
    monkeypatch.chdir(tmp_path)
    Checkpoint(cfg, no_aug, 1, 10).save({"step": 4, "epoch": 1, "batch": 3})
    (tmp_path / "m.json").write_text("{}")  # what the run writes beside its inputs does not change its key
    assert Checkpoint(cfg, no_aug, 1, 10).load()["step"] == 4
    for change in (lambda: (tmp_path / "teacher" / "model.safetensors").write_bytes(b"weights two"),
                   lambda: (tmp_path / "logits" / "manifest.json").write_text('{"fingerprint": "bbb"}'),
                   lambda: (tmp_path / "prepared" / "train.tsv").write_text("id\ttext\nx\ty\n")):
        change()
        assert Checkpoint(cfg, paths, 1, 10).load() is None
        assert "saved by a run with other params or inputs" in capsys.readouterr().err
        Checkpoint(cfg, paths, 1, 10).save({"step": 3, "epoch": 1, "batch": 2})


# ------------------------------------------------------------------------ 6. labels read as what they are
def _split(tmp_path, name, content, fmt=None, text="text", label="label", columns=None):
    from distillery.data.files import read_split

    p = tmp_path / name
    if isinstance(content, pd.DataFrame):
        content.to_parquet(p)
    else:
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return read_split(p, fmt, None, text, None, label, columns=tuple(columns) if columns else None)


def test_a_whole_float_label_is_the_same_class_as_its_integer(tmp_path):
    from distillery.data.files import label_order

    s = _split(tmp_path, "a.csv", "text,label\ngood,1\nbad,0\nfine,1.0\nok,1e0\n")
    assert s["label_raw"].tolist() == ["1", "0", "1", "1"] and label_order(s, "a.csv", None) == ["0", "1"]
    j = _split(tmp_path, "a.jsonl", '{"text": "good", "label": 1}\n{"text": "bad", "label": 0.0}\n')
    assert j["label_raw"].tolist() == ["1", "0"]


@pytest.mark.parametrize("value,kind", [("[1]", "a list"), ('{"a": 1}', "a mapping")])
def test_a_list_or_mapping_label_is_refused_by_its_line(tmp_path, value, kind):
    with pytest.raises(DistilleryError, match=rf"a\.jsonl:2: column 'label' holds {kind}"):
        _split(tmp_path, "a.jsonl", f'{{"text": "good", "label": 1}}\n{{"text": "bad", "label": {value}}}\n')


def test_a_regression_score_in_python_only_syntax_is_refused(tmp_path):
    from distillery.data.files import scores

    s = _split(tmp_path, "a.csv", "text,label\ngood,2.5\nbad,2_5\n")
    with pytest.raises(DistilleryError, match=r"a\.csv:3: label '2_5' is not a finite number"):
        scores(s, str(tmp_path / "a.csv"))


def test_a_nested_parquet_text_column_is_refused(tmp_path):
    frame = pd.DataFrame({"text": [{"a": "good", "b": 1}, {"a": "bad", "b": 2}], "label": [1, 0]})
    with pytest.raises(DistilleryError, match=r"a\.parquet:1: column 'text' holds a mapping"):
        _split(tmp_path, "a.parquet", frame)


# ------------------------------------------------------- 7. a header row in a file said to have none
def test_a_header_row_equal_to_the_names_given_is_skipped_and_said(tmp_path, capsys):
    s = _split(tmp_path, "a.csv", "text,label\ngood,1\nbad,0\n", columns=["text", "label"])
    assert s["text_a"].tolist() == ["good", "bad"] and s["row"].tolist() == [2, 3]
    assert "a.csv:1: this row is the names prepare.columns gives" in capsys.readouterr().err
    s = _split(tmp_path, "b.csv", "good,1\nbad,0\n", columns=["text", "label"])  # no header: every row kept
    assert s["text_a"].tolist() == ["good", "bad"]


# ------------------------------------------------------------ 8. a key given twice in params.yaml
@pytest.mark.parametrize("text,line,first", [
    ("prepare:\n  max_train: 5\nteacher:\n  epochs: 1\nprepare:\n  max_dev: 3\n", 5, 1),
    ("prepare:\n  max_train: 5\n  seed: 1\n  max_train: 7\n", 4, 2),
])
def test_a_key_given_twice_in_params_is_refused_naming_both_lines(tmp_path, text, line, first):
    (tmp_path / "params.yaml").write_text(text)
    msg = one_line(cli("prepare", cwd=tmp_path))
    assert msg.startswith(f"error: params.yaml:{line}: key ") and f"given twice in one block (first on line {first})" in msg


# -------------------------------------------------- 9. the weights are the bytes that were saved
def test_zeroed_bytes_in_the_teachers_weights_are_caught(tmp_path, tiny_teacher, sst2_prepared):
    t = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, t)
    w = t / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)  # 64 zeroed bytes: every value still finite
    w.write_bytes(bytes(data))
    line = one_line(cli("soft-labels", "--teacher", str(t), "--prepared", str(sst2_prepared), "--augmented", "",
                        "--out", "logits", "--store", "store", "--metrics", "m.json", cwd=tmp_path))
    assert line == (f"error: {w}: does not match the SHA-256 recorded when it was saved ({t / 'distillery.json'}); "
                    "the file is damaged or was replaced: re-create the teacher (re-run the stage that wrote it)")
    assert not (tmp_path / "logits").exists()


def test_a_students_weights_are_checked_on_load(tmp_path):
    from transformers import AutoTokenizer

    from distillery.students import load_student, save_student
    from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent
    from distillery.teacher.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    save_student(BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=8, hidden_size=4, mlp_size=4)), tok,
                 tmp_path / "s", {"name": "s"})
    assert "student.pt" in json.loads((tmp_path / "s" / "student.json").read_text())["weights_sha256"]
    load_student(tmp_path / "s")
    data = bytearray((tmp_path / "s" / "student.pt").read_bytes())
    data[-200:-136] = bytes(64)
    (tmp_path / "s" / "student.pt").write_bytes(bytes(data))
    with pytest.raises(DistilleryError, match="student.pt: does not match the SHA-256 recorded"):
        load_student(tmp_path / "s")


# ------------------------------------------------------------------- 10. readers: clear lines, right numbers
def test_jsonl_with_a_byte_order_mark_and_blank_lines_is_read_with_true_line_numbers(tmp_path):
    s = _split(tmp_path, "a.jsonl", b'\xef\xbb\xbf{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\n')
    assert s["text_a"].tolist() == ["good", "bad"] and s["row"].tolist() == [1, 3]
    with pytest.raises(DistilleryError, match=r"b\.jsonl:3: empty text"):
        _split(tmp_path, "b.jsonl", '{"text": "good", "label": 1}\n\n{"text": " ", "label": 0}\n')


@pytest.mark.parametrize("line,kind", [('["good", 1]', "list"), ('"good"', "str")])
def test_a_jsonl_line_that_is_not_an_object_is_named(tmp_path, line, kind):
    with pytest.raises(DistilleryError, match=rf"a\.jsonl:2: a JSON Lines record must be an object .* got {kind}"):
        _split(tmp_path, "a.jsonl", f'{{"text": "good", "label": 1}}\n{line}\n')


def test_duplicate_column_names_are_named(tmp_path):
    with pytest.raises(DistilleryError, match=r"a\.csv: the header names column 'text' twice"):
        _split(tmp_path, "a.csv", "text,text,label\na,b,1\n")


def test_a_fifo_or_a_device_is_not_called_missing(tmp_path):
    from distillery.data.files import read_split

    os.mkfifo(tmp_path / "fifo.csv")
    (tmp_path / "zero.csv").symlink_to("/dev/zero")
    with pytest.raises(DistilleryError, match=r"fifo\.csv: is a pipe \(FIFO\), not a data file"):
        read_split(tmp_path / "fifo.csv", None, None, "text", None, "label")
    with pytest.raises(DistilleryError, match=r"zero\.csv: is a device \(a link to /dev/zero\), not a data file"):
        read_split(tmp_path / "zero.csv", None, None, "text", None, "label")


# ---------------------------------------------------------------------------------- 11. params read as meant
def test_a_whole_number_float_and_a_number_as_text_are_accepted(tmp_path):
    (tmp_path / "2024").mkdir()
    for f in ("train.tsv", "dev.tsv"):  # a folder named by a number: 60 rows of each SST-2 split
        lines = (GLUE / "SST-2" / f).read_text(encoding="utf-8").splitlines()[:61]
        (tmp_path / "2024" / f).write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_params(tmp_path)
    r = cli("prepare", "--set", "data_dir=2024", "--set", "max_train=1e3", "--set", "max_dev=2e1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(pd.read_csv(tmp_path / "data/prepared/dev.tsv", sep="\t")) == 20


@pytest.mark.parametrize("raw,expect", [
    (b"prepare:\n  task: sst2\n\tmax_train: 5\n", "error: params.yaml:3: a tab character where YAML wants spaces"),
    (b"prepare:\n  task: caf\xe9\n", "error: params.yaml:2: byte 20 (0xe9) is not valid UTF-8; save the file as UTF-8"),
])
def test_a_tab_or_a_latin1_byte_in_params_is_named_by_line(tmp_path, raw, expect):
    (tmp_path / "params.yaml").write_bytes(raw)
    assert one_line(cli("prepare", cwd=tmp_path)).startswith(expect)


# ------------------------------------------------------------------------ 12. stored logits checked on load
def _artifact(tmp_path, keys, logits):
    from distillery.logits.arrays import digest, npz_bytes

    d = tmp_path / "logits"
    d.mkdir()
    data = npz_bytes(keys=keys, logits=logits)
    (d / "shard-00000.npz").write_bytes(data)
    (d / "manifest.json").write_text(json.dumps({"format": 2, "dtype": "float16", "fingerprint": "x", "n_rows": 3,
                                                 "features": [], "shards": [{"file": "shard-00000.npz", "rows": 3,
                                                                             "sha256": digest(data)}]}))
    return d


@pytest.mark.parametrize("logits,expect", [
    (np.zeros((2, 2), np.float16), r"array 'logits' has shape \(2, 2\), but the shard holds 3 keys"),
    (np.zeros(3, np.float16), r"array 'logits' has shape \(3,\), but the shard holds 3 keys"),
    (np.array([[0, 1], [np.nan, 0], [1, 1]], np.float16), r"array 'logits' holds NaN or infinite values"),
])
def test_stored_logits_of_the_wrong_shape_or_not_finite_are_named(tmp_path, logits, expect):
    from distillery.logits.artifact import Logits

    d = _artifact(tmp_path, np.arange(3, dtype=np.uint64), logits)
    with pytest.raises(DistilleryError, match=rf"{d / 'shard-00000.npz'}: {expect}"):
        Logits(d)


# ---------------------------------------------------------------------------------- 13. a damaged ONNX file
@pytest.mark.parametrize("content", [b"garbage" * 10, None])
def test_a_damaged_onnx_file_is_one_line(tmp_path, content):
    import torch

    from distillery.export.runtime import session

    p = tmp_path / "model.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(p), dynamo=False)
    p.write_bytes(content if content is not None else p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(DistilleryError, match=rf"{p}: ONNX graph damaged .*; re-run `distillery export`"):
        session(p)


# ------------------------------------------------------------------ 14. outputs: a link to its own output
def test_out_through_a_link_to_its_own_previous_output_replaces_the_folder(tmp_path):
    assert cli(*prepare_args("real"), cwd=tmp_path).returncode == 0
    (tmp_path / "link").symlink_to("real")
    r = cli(*prepare_args("link"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "train.tsv").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (tmp_path / "dangling").symlink_to("nowhere")
    assert "is a link to nowhere, not to a folder" in one_line(cli(*prepare_args("dangling"), cwd=tmp_path))
