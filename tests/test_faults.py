"""Hostile input and faults (issue 14): names that would be paths, a damaged logit store, loss weights
that learn nothing, out-of-range params, a full disk, scratch left by a killed run. Each case: one
line on stderr naming the param or file, exit status 2, nothing written or half-written."""

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from distillery.config import EvaluateConfig, MemberConfig, PrepareConfig, SoftLabelConfig, TeacherConfig
from distillery.errors import DistilleryError
from tests.conftest import REPO, conf, make_student, write_params

pytestmark = pytest.mark.needs_data


def cli(*args, cwd):
    """A stage command in `cwd`, which gets the repository's params.yaml unless the test wrote its own."""
    if not (cwd / "params.yaml").is_file():
        write_params(cwd)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, capture_output=True, text=True, env=env)


def one_line(r) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr[-2000:])
    return lines[0]


# ------------------------------------------------------------------------------------------ bug 1: names
@pytest.mark.parametrize("name", [".", "", "../../../escaped"])
def test_student_names_that_would_be_paths_are_refused(tmp_path, name):
    sibling = tmp_path / "models" / "students" / "kept"
    sibling.mkdir(parents=True)
    (sibling / "student.json").write_text("{}")
    write_params(tmp_path, {"kept": {"model": "bilstm", "losses": {"mse_logits": 1}}})
    for cmd in (["distill", "--name", name], ["export", "--name", name]):
        line = one_line(cli(*cmd, cwd=tmp_path))
        assert "is not a plain name" in line and "--name" in line
    assert (sibling / "student.json").is_file()
    assert sorted(p.name for p in (tmp_path / "models" / "students").iterdir()) == ["kept"]
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "metrics").exists()


@pytest.mark.parametrize("name", ["..", "a/b", "-x", "x" * 65, "a b", "a.b"])
def test_student_name_is_checked_in_the_config(name):
    with pytest.raises(DistilleryError, match=r"param students \(a student's name\): .* is not a plain name"):
        make_student(name, model="bilstm", losses={"ce": 1.0})


# ------------------------------------------------------------------------------------- bug 5: zero weights
def test_all_loss_weights_zero_is_refused_before_loading(tmp_path):
    write_params(tmp_path, {"z": {"model": "bilstm", "losses": {"mse_logits": 0, "ce": 0}}})
    line = one_line(cli("distill", "--name", "z", cwd=tmp_path))
    assert line.startswith("error: param students.z.losses: every loss weight is 0")
    with pytest.raises(DistilleryError, match=r"students.t.intermediate.losses: every loss weight is 0"):
        make_student("t", model="tinybert", losses={"soft_ce": 1.0}, intermediate={"losses": {"tinybert_hidden": 0}})


# ----------------------------------------------------------------------------- every numeric param's range
@pytest.mark.parametrize("make,param", [
    (lambda: conf(TeacherConfig, weight_decay=-0.1), "teacher.weight_decay: must be >= 0"),
    (lambda: conf(TeacherConfig, logging_steps=0), "teacher.logging_steps: must be >= 1"),
    (lambda: conf(TeacherConfig, seed=-1), "teacher.seed: must be >= 0"),
    (lambda: conf(TeacherConfig, lr=float("nan")), "teacher.lr: must be a finite number"),
    (lambda: conf(PrepareConfig, data_dir="x", seed=-3), "prepare.seed: must be >= 0"),
    (lambda: conf(PrepareConfig, data_dir="x", duplicates="last"), "prepare.duplicates: must be one of majority, first, drop"),
    (lambda: conf(SoftLabelConfig, threads=-1), "soft_labels.threads: must be in 0..1024"),
    (lambda: conf(SoftLabelConfig, max_seq_len=4097), "soft_labels.max_seq_len: must be in 8..4096"),
    (lambda: conf(EvaluateConfig, batch_sizes=(0,)), "evaluate.batch_sizes: must be in 1..65536"),
    (lambda: conf(EvaluateConfig, warmup=-3), "evaluate.warmup: must be >= 0"),
    (lambda: conf(EvaluateConfig, exit_speeds=(0.5, 1.5)), "evaluate.exit_speeds: must be in "),
    (lambda: conf(TeacherConfig, dropout=1.0), "teacher.dropout: must be in "),
    (lambda: MemberConfig(name="m", task="sst2", seed=0, dropout=0.1, epochs=0), "members.m.epochs: must be > 0"),
    (lambda: make_student("s", model="bilstm", losses={"ce": 1.0}, max_seq_len=0), "students.s.max_seq_len: must be in 2..4096"),
    (lambda: make_student("s", model="bilstm", losses={"ce": 1.0}, epochs=1.5), "students.s.epochs: must be a whole number"),
    (lambda: make_student("s", model="bilstm", losses={"ce": 1.0}, seed=-1), "students.s.seed: must be >= 0"),
    (lambda: make_student("s", model="bilstm", losses={"ce": 1.0}, weight_decay=-1.0), "students.s.weight_decay: must be >= 0"),
    (lambda: make_student("s", model="bilstm", losses={"ce": "x"}), "students.s.losses.ce: must be a finite number"),
])
def test_numeric_params_have_ranges(make, param):
    with pytest.raises(DistilleryError, match="param " + param.replace("(", r"\(").replace(".", r"\.")):
        make()


def test_an_unset_optional_param_passes_its_range():
    assert conf(TeacherConfig, dropout=None).dropout is None
    assert conf(TeacherConfig, dropout=0.0).dropout == 0.0


@pytest.mark.parametrize("args,expect", [
    (["evaluate", "--set", "batch_sizes=[0]"], "error: param evaluate.batch_sizes: must be in 1..65536, got 0"),
    (["evaluate", "--set", "warmup=-3"], "error: param evaluate.warmup: must be >= 0, got -3"),
    (["soft-labels", "--set", "threads=-1"], "error: param soft_labels.threads: must be in 0..1024, got -1"),
    (["teacher", "--set", "logging_steps=0"], "error: param teacher.logging_steps: must be >= 1, got 0"),
    (["teacher", "--set", "logging_step=5"], "error: param teacher.logging_step: unknown setting; use base_model, "
     "batch_size, bf16, dropout, epochs, evals_per_epoch, logging_steps, lr, max_seq_len, max_steps, min_gain, patience, "
     "seed, threads, warmup_ratio, weight_decay"),
    (["teacher", "--set", "lr"], "error: --set 'lr': expected KEY=VALUE, e.g. --set lr=0.002"),
    (["distill", "--name", "s", "--set", "epochs=1.5"], "error: param students.s.epochs: must be a whole number, got 1.5"),
    (["distill", "--name", "s", "--set", "epoch=3"], "error: param students.s.epoch: unknown setting; use batch_size, betas, "
     "bucket_batches, epochs, evals_per_epoch, grad_clip, intermediate, loss_args, losses, lr, max_examples, "
     "max_seq_len, max_steps, min_gain, model, model_args, optimizer, patience, seed, task, tasks, temperature, "
     "threads, transfer_set, warmup_ratio, weight_decay"),
    (["distill", "--name", "nobody"], "error: param students.nobody: not in params.yaml; add a block for it "
     "(see README, 'Add a student')"),
])
def test_out_of_range_settings_are_one_line_errors(tmp_path, args, expect):
    """Each stage reads its section of params.yaml; `--set` overrides are checked like the file's values."""
    write_params(tmp_path, {"s": {"model": "bilstm", "losses": {"ce": 1}}})
    assert one_line(cli(*args, cwd=tmp_path)) == expect


def test_max_seq_len_beyond_the_teachers_positions(tmp_path, sst2_prepared, tiny_base):
    """The tiny teacher has 128 positions; BERT has 512. Asking for more is refused with the limit."""
    r = cli("teacher", "--set", f"base_model={tiny_base}", "--set", "max_seq_len=256", "--prepared", str(sst2_prepared),
            "--out", str(tmp_path / "t"), cwd=tmp_path)
    assert one_line(r) == "error: param teacher.max_seq_len: 256 tokens, but the model has 128 positions; set it to at most 128"
    assert not (tmp_path / "t").exists() and not list(tmp_path.glob(".t-trainer*"))


# ---------------------------------------------------------------------------- bugs 2, 3: a damaged store
def _label(teacher, prepared, store, out, metrics):
    from distillery.logits.run import soft_labels

    return soft_labels(conf(SoftLabelConfig, batch_tokens=256, checkpoint_every=100, threads=1), teacher, prepared, None,
                       out, store, metrics)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tiny_teacher, sst2_prepared):
    """A store and an artifact of 400 texts in 4 parts, made once."""
    d = tmp_path_factory.mktemp("labelled")
    _label(tiny_teacher, sst2_prepared, d / "store", d / "ref", d / "ref.json")
    return d


@pytest.mark.parametrize("damage", ["negated", "zero-byte", "truncated", "garbage"])
def test_a_damaged_store_part_is_named_and_relabelled(tmp_path, labelled, tiny_teacher, sst2_prepared, damage, capfd):
    import shutil

    from distillery.logits.artifact import Logits

    shutil.copytree(labelled / "store", tmp_path / "store")
    parts = sorted((tmp_path / "store").rglob("part-*.npz"))
    assert len(parts) == 4  # 400 texts, a part every 100
    victim = parts[1]
    n_victim = len(np.load(victim)["keys"])
    if damage == "negated":  # still a valid .npz, same name: only the checksum can tell
        with np.load(victim) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["logits"] = -arrays["logits"]
        with open(victim, "wb") as fh:
            np.savez(fh, **arrays)
    elif damage == "zero-byte":
        victim.write_bytes(b"")
    elif damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:100])
    else:
        victim.write_bytes(b"\x00garbage" * 50)
    if damage == "zero-byte":  # through the command: exit 0 and a warning naming the part (it printed `Aborted.`)
        r = cli("soft-labels", "--teacher", str(tiny_teacher), "--prepared", str(sst2_prepared), "--augmented", "",
                "--out", str(tmp_path / "again"), "--store", str(tmp_path / "store"),
                "--metrics", str(tmp_path / "m.json"), "--set", "batch_tokens=256", "--set", "checkpoint_every=100",
                "--set", "threads=1", cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        err, m = r.stderr, json.loads((tmp_path / "m.json").read_text())
    else:
        m = _label(tiny_teacher, sst2_prepared, tmp_path / "store", tmp_path / "again", tmp_path / "m.json")
        err = capfd.readouterr().err
    assert f"warning: {victim}: damaged" in err
    assert (m["labelled"], m["reused"], m["damaged_parts_relabelled"]) == (n_victim, 400 - n_victim, 1)
    a, b = Logits(labelled / "ref"), Logits(tmp_path / "again")
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.logits, b.logits)  # served from the store, never from the damaged part


def test_a_damaged_artifact_shard_stops_with_its_path(tmp_path, labelled):
    import shutil

    from distillery.logits.artifact import Logits

    shutil.copytree(labelled / "ref", tmp_path / "out")
    shard = tmp_path / "out" / "shard-00000.npz"
    data = bytearray(shard.read_bytes())
    data[-40] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DistilleryError, match=rf"{shard}: missing or damaged .* re-run `distillery soft-labels`"):
        Logits(tmp_path / "out")
    shard.write_bytes(b"")
    with pytest.raises(DistilleryError, match="missing or damaged"):
        Logits(tmp_path / "out")


def test_precision_is_part_of_the_store_key(tmp_path):
    from distillery.logits.store import LogitStore

    keys = np.array([1, 2], dtype=np.uint64)
    bf = LogitStore(tmp_path, "fp", 2, precision="bf16")
    bf.add(keys, {"logits": np.ones((2, 2), np.float32)})
    fp32 = LogitStore(tmp_path, "fp", 2, precision="fp32")
    assert not fp32.lookup(keys)[0].any()  # bf16 logits never serve an fp32 run
    assert LogitStore(tmp_path, "fp", 2, precision="bf16").lookup(keys)[0].all()


# ------------------------------------------------------------------------------------- full disk, leftovers
def test_full_disk_names_the_path_and_leaves_nothing(tmp_path, monkeypatch):
    import distillery.io as dio

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(dio.os, "fsync", no_space)
    target = tmp_path / "out" / "metrics.json"
    with pytest.raises(DistilleryError, match=rf"{target}: cannot write \(No space left on device\); free some space"):
        dio.write_json(target, {"a": 1})
    assert list((tmp_path / "out").iterdir()) == []


def test_scratch_of_a_killed_run_is_removed_by_the_next(tmp_path):
    from distillery.io import atomic_dir, atomic_file

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that has exited
    left = [tmp_path / f".s1.{dead}.abc123.tmp", tmp_path / ".s1.old", tmp_path / f".m.json.{dead}.x9.tmp"]
    left[0].mkdir()
    (left[0] / "student.pt").write_bytes(b"0" * 1000)
    left[1].mkdir()
    left[2].write_text("{")
    alive = tmp_path / f".s1.{os.getppid()}.live.tmp"  # a concurrent writer's scratch stays
    alive.mkdir()
    with atomic_dir(tmp_path / "s1", "distill") as d:
        (d / "student.json").write_text("{}")
    with atomic_file(tmp_path / "m.json") as fh:
        fh.write("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["s1", "m.json", alive.name])


def test_conflicting_training_duplicates_are_reported(tmp_path):
    d = tmp_path / "glue"
    d.mkdir()
    (d / "train.tsv").write_text("sentence\tlabel\nfine\t1\nfine\t0\nfine\t1\nbad\t0\n", encoding="utf-8")
    (d / "dev.tsv").write_text("sentence\tlabel\nfine\t1\nfine\t1\n", encoding="utf-8")
    r = cli("prepare", "--set", f"data_dir={d}", "--out", str(tmp_path / "p"), "--metrics", str(tmp_path / "m.json"),
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ("prepare: 1 training texts appear with different labels (3 rows); kept labels {1: 1} by rule "
            "prepare.duplicates=majority") in r.stderr
    assert "train 4 rows read, 2 kept; dev 2 rows read, 2 kept" in r.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["train"]["conflicting_texts"] == 1 and m["dev"] == {"rows_read": 2, "rows_kept": 2, "distinct_texts": 1}
