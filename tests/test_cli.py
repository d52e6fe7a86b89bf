"""Each stage command: bad input gives one line on stderr, exit status 2, and no output written."""

import subprocess
import sys

import pytest

from tests.conftest import GLUE, make_student, repo_params, write_params

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
    write_params(tmp_path)
    r = run("prepare", "--set", f"data_dir={d}", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {d / 'train.tsv'}:3: 1 field where the header has 2; fix or delete this row "
                                           "(or set prepare.delimiter)"]
    assert not (tmp_path / "out").exists()


def test_unknown_task(tmp_path):
    write_params(tmp_path, prepare={**repo_params()["prepare"], "task": "sts", "data_dir": str(GLUE / "SST-2")})
    r = run("prepare", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: param prepare.task: unknown task 'sts': not a GLUE preset")


def test_a_stage_reads_its_section_and_set_overrides_it(tmp_path):
    """params.yaml is where the settings are; `--set` changes one for one run (here: a sample of 50)."""
    write_params(tmp_path, prepare={**repo_params()["prepare"], "data_dir": str(GLUE / "SST-2"), "max_dev": 20})
    r = run("prepare", "--set", "max_train=50", "--out", "p", "--metrics", "m.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "50 kept" in r.stdout and "20 kept" in r.stdout
    r = run("prepare", "--out", "p", "--metrics", "m.json", cwd=tmp_path / "p")  # no params.yaml there
    # issue 30: a missing params file is named as such (it said `param prepare.task: missing`)
    assert r.returncode == 2 and r.stderr == ("error: --params params.yaml: no such file; run in the project folder "
                                              "or give --params\n")
    r = run("prepare", "--params", "nope.yaml", "--out", "q", "--metrics", "m.json", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: --params nope.yaml: no such file")
    assert not (tmp_path / "q").exists()


def test_distill_bad_loss_name(tmp_path, sst2_prepared, tiny_teacher):
    write_params(tmp_path, {"s": {"model": "bilstm", "losses": {"msee": 1}, "transfer_set": "train"}})
    r = run("distill", "--name", "s", "--prepared", str(sst2_prepared), "--teacher", str(tiny_teacher), cwd=tmp_path)
    assert r.returncode == 2 and "unknown loss 'msee' (param students.s.losses)" in r.stderr


def test_distill_merges_family_defaults_and_sets():
    """A student block lists only what makes it different; --set reaches nested settings."""
    from stages.common import apply_sets

    block = apply_sets({"model": "tinybert", "losses": {"soft_ce": 1.0}, "model_args": {"hidden_size": 192}},
                       ["model_args.layer_map=[2, 4]", "intermediate.losses.tinybert_hidden=1.0",
                        "intermediate.epochs=2", "lr=2e-4"])
    cfg = make_student("t", **block)
    defaults = repo_params()["distill"]
    assert cfg.model_args == {**defaults["transformer"]["model_args"], "hidden_size": 192, "layer_map": [2, 4]}
    assert cfg.intermediate == {"losses": {"tinybert_hidden": 1.0}, "epochs": 2}
    assert (cfg.lr, cfg.batch_size, cfg.grad_clip) == (2e-4, defaults["transformer"]["batch_size"],
                                                       defaults["transformer"]["grad_clip"])
    assert cfg.losses == {"soft_ce": 1.0}  # a student's losses are its own, never merged
    assert make_student("b", model="bilstm", losses={"ce": 1.0}).epochs == defaults["bilstm"]["epochs"]


def test_distill_unknown_intermediate_setting(tmp_path):
    write_params(tmp_path, {"s": {"model": "tinybert", "losses": {"ce": 1}}})
    r = run("distill", "--name", "s", "--set", "intermediate.epoch=3", cwd=tmp_path)
    assert r.returncode == 2 and "param students.s.intermediate.epoch: unknown setting" in r.stderr


def test_an_option_that_is_not_a_setting_is_one_line(tmp_path):
    r = run("teacher", "--lr", "5", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: No such option: --lr") and "override one with --set KEY=VALUE" in lines[0]
    assert run("distill", "--help", cwd=tmp_path).returncode == 0
