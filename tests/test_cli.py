"""Each stage command: bad input gives one line on stderr, exit status 2, and no output written."""

import subprocess
import sys

import pytest

from tests.conftest import GLUE

pytestmark = pytest.mark.needs_data


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(__import__("tests.conftest").conftest.REPO)})


def test_help_lists_every_stage(tmp_path):
    out = run("--help", cwd=tmp_path).stdout
    for stage in ("prepare", "teacher", "augment", "soft-labels", "distill", "evaluate", "export"):
        assert stage in out


def test_ragged_tsv_is_one_line_error(tmp_path):
    d = tmp_path / "glue"
    d.mkdir()
    (d / "train.tsv").write_text("sentence\tlabel\nfine\t1\nbroken row\n", encoding="utf-8")
    (d / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    r = run("prepare", "--data_dir", str(d), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {d / 'train.tsv'}:3: expected 2 tab-separated columns, found 1; fix or delete this row"]
    assert not (tmp_path / "out").exists()


def test_unknown_task(tmp_path):
    r = run("prepare", "--task", "sts", "--data-dir", str(GLUE / "SST-2"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown task 'sts' (param prepare.task)")


def test_distill_unknown_setting_names_param(tmp_path):
    r = run("distill", "--name", "s", "--model", "bilstm", "--losses.ce", "1", "--epoch", "3", cwd=tmp_path)
    assert r.returncode == 2 and "param students.s.epoch: unknown setting" in r.stderr


def test_distill_bad_loss_name(tmp_path, sst2_prepared, tiny_teacher):
    r = run("distill", "--name", "s", "--model", "bilstm", "--losses.mse", "1", "--prepared", str(sst2_prepared),
            "--teacher", str(tiny_teacher), cwd=tmp_path)
    assert r.returncode == 2 and "unknown loss 'mse' (param students.s.losses)" in r.stderr


def test_distill_parses_lists_and_the_intermediate_block():
    from stages.distill import parse_student_args

    got = parse_student_args("t", ["--model", "tinybert", "--losses.soft_ce", "1.0", "--model_args.layer_map", "2",
                                   "--model_args.layer_map", "4", "--model_args.hidden_size", "192",
                                   "--intermediate.losses.tinybert_hidden", "1.0", "--intermediate.epochs", "2",
                                   "--intermediate.transfer_set", "augmented", "--no-model_args.freeze_embeddings"])
    assert got == {"model": "tinybert", "losses": {"soft_ce": 1.0},
                   "model_args": {"layer_map": [2, 4], "hidden_size": 192, "freeze_embeddings": False},
                   "intermediate": {"losses": {"tinybert_hidden": 1.0}, "epochs": 2, "transfer_set": "augmented"}}


def test_distill_unknown_intermediate_setting(tmp_path):
    r = run("distill", "--name", "s", "--model", "tinybert", "--losses.ce", "1", "--intermediate.epoch", "3", cwd=tmp_path)
    assert r.returncode == 2 and "param students.s.intermediate.epoch: unknown setting" in r.stderr
