"""Issue 30: nothing lost, nothing silently wrong. One test per numbered item of the issue and per error it
lists; each failed on the main of 2026-11-30 (the issue's table in docs/reliability.md gives the command, the
exit status and the first line of stderr before and after)."""

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from distillery.config import SoftLabelConfig
from distillery.errors import DistilleryError
from tests.conftest import GLUE, REPO, conf, make_student, readme_block, repo_params, write_params

pytestmark = pytest.mark.needs_data

OFFLINE = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_DISABLE_TELEMETRY": "1"}  # a Hub that refuses at once


def cli(*args, cwd, env=None):
    if not (cwd / "params.yaml").is_file():
        write_params(cwd)
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, capture_output=True, text=True, env=env)


def one_line(r) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("warning:")]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr[-2000:])
    return lines[0]


def tree(folder: Path) -> dict:
    """Every file under `folder` with its bytes: what 'nothing touched' compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def prepare_args(out, metrics="m.json"):
    return ("prepare", "--set", f"data_dir={GLUE / 'SST-2'}", "--set", "max_train=40", "--set", "max_dev=20",
            "--out", str(out), "--metrics", str(metrics))


# ------------------------------------------------------------------------------ 1. --out never deletes a user's folder
def test_out_pointed_at_a_project_folder_touches_nothing(tmp_path):
    project = tmp_path / "project"
    (project / "notes").mkdir(parents=True)
    (project / "notes" / "todo.txt").write_text("keep me")
    write_params(project)
    before = tree(project)
    line = one_line(cli(*prepare_args(project), cwd=tmp_path))
    assert line.startswith(f"error: --out {project}: folder exists and is not an output of distillery prepare")
    assert tree(project) == before and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("out", [".", "precious", "file.txt"])
def test_out_refusals_name_the_folder(tmp_path, out):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    write_params(tmp_path)
    before = tree(tmp_path)
    line = one_line(cli(*prepare_args(out), cwd=tmp_path))
    assert line.startswith(f"error: --out {out}: ") and "choose another folder" in line
    assert tree(tmp_path) == before


def test_out_may_replace_its_own_previous_output_but_not_another_stages(tmp_path):
    assert cli(*prepare_args("p"), cwd=tmp_path).returncode == 0
    marker = json.loads((tmp_path / "p" / ".distillery-output").read_text())
    assert marker["stage"] == "prepare" and {"train.tsv", "dev.tsv", "task.json"} <= set(marker["files"])
    assert cli(*prepare_args("p"), cwd=tmp_path).returncode == 0  # a re-run replaces its own output
    (tmp_path / "p" / "my-notes.md").write_text("added by hand")
    line = one_line(cli(*prepare_args("p"), cwd=tmp_path))
    assert "holds files distillery prepare did not write (my-notes.md)" in line
    assert (tmp_path / "p" / "my-notes.md").read_text() == "added by hand"
    (tmp_path / "p" / "my-notes.md").unlink()
    line = one_line(cli("augment", "--prepared", "p", "--out", "p", "--metrics", "a.json", cwd=tmp_path))
    assert line == "error: --out p: holds the output of distillery prepare, not augment; nothing was changed: " \
                   "choose another folder"
    assert (tmp_path / "p" / "train.tsv").is_file()


def test_an_empty_folder_is_a_fine_output(tmp_path):
    (tmp_path / "empty").mkdir()
    assert cli(*prepare_args("empty"), cwd=tmp_path).returncode == 0
    assert (tmp_path / "empty" / "train.tsv").is_file()


# ---------------------------------------------- 2. the live folder changes together with the model, or not at all
def _distill_paths(tmp_path, prepared, teacher, logits, name="s"):
    from distillery.distill.recipe import Paths

    return Paths(Path(prepared), Path(teacher), Path(logits), None, tmp_path / name, tmp_path / f"{name}.json",
                 tmp_path / f"live_{name}")


@pytest.fixture(scope="module")
def logits(tmp_path_factory, tiny_teacher, sst2_prepared):
    from distillery.logits.run import soft_labels

    d = tmp_path_factory.mktemp("rel_logits")
    soft_labels(conf(SoftLabelConfig, batch_tokens=512, checkpoint_every=100, threads=1), tiny_teacher, sst2_prepared,
                None, d / "logits", d / "store", d / "m.json")
    return d


def _bilstm(**kw):
    return make_student("s", model="bilstm", losses={"mse_logits": 1.0}, transfer_set="train", epochs=2,
                        model_args={"hidden_size": 8, "mlp_size": 8}, **kw)


def test_a_failed_distill_keeps_the_previous_curves(tmp_path, monkeypatch, sst2_prepared, tiny_teacher, logits):
    import distillery.distill.recipe as recipe
    import distillery.tasks.classification as classification

    paths = _distill_paths(tmp_path, sst2_prepared, tiny_teacher, logits / "logits")
    recipe.distill(_bilstm(), paths)
    before, model = tree(paths.live), tree(paths.out)
    assert any(k.endswith("dev/accuracy.tsv") for k in before)

    def full_disk(*a, **k):
        raise DistilleryError(f"{paths.out}: cannot write (No space left on device)")

    monkeypatch.setattr(classification, "save_student", full_disk)
    with pytest.raises(DistilleryError, match="No space left"):
        recipe.distill(_bilstm(lr=0.01), paths)
    assert tree(paths.live) == before and tree(paths.out) == model  # the model and its curves, as they were
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left


def test_a_failed_first_run_leaves_no_curves(tmp_path, monkeypatch, sst2_prepared, tiny_teacher, logits):
    import distillery.distill.recipe as recipe
    import distillery.tasks.classification as classification

    paths = _distill_paths(tmp_path, sst2_prepared, tiny_teacher, logits / "logits")
    monkeypatch.setattr(classification, "save_student", lambda *a, **k: (_ for _ in ()).throw(OSError(30, "Read-only")))
    with pytest.raises(OSError):
        recipe.distill(_bilstm(), paths)
    assert not paths.live.exists() and not paths.out.exists()


def test_a_failed_teacher_keeps_the_previous_curves(tmp_path, monkeypatch, sst2_prepared, tiny_base):
    import distillery.teacher.train as train
    from distillery.config import TeacherConfig

    cfg = conf(TeacherConfig, base_model=str(tiny_base), epochs=1, batch_size=64, lr=1e-3, bf16=False, logging_steps=2)
    train.train_teacher(cfg, sst2_prepared, tmp_path / "t", tmp_path / "live")
    before, model = tree(tmp_path / "live"), tree(tmp_path / "t")
    assert any("train/loss.tsv" in k for k in before)

    def fail(*a, **k):
        raise DistilleryError("disk full")

    monkeypatch.setattr(train, "check_finite", fail)
    with pytest.raises(DistilleryError):
        train.train_teacher(cfg, sst2_prepared, tmp_path / "t", tmp_path / "live")
    assert tree(tmp_path / "live") == before and tree(tmp_path / "t") == model


def test_two_concurrent_distills_into_one_output_do_not_mix_their_curves(tmp_path, sst2_prepared, tiny_teacher,
                                                                          logits):
    block = {"model": "bilstm", "losses": {"mse_logits": 1.0}, "transfer_set": "train", "epochs": 2,
             "min_gain": None, "evals_per_epoch": 1, "model_args": {"hidden_size": 8, "mlp_size": 8}}
    write_params(tmp_path, {"s": block})
    args = ("distill", "--name", "s", "--prepared", str(sst2_prepared), "--teacher", str(tiny_teacher),
            "--logits", str(logits / "logits"), "--augmented", "", "--out", "out", "--metrics", "m.json",
            "--live-dir", "live")
    results = []
    threads = [threading.Thread(target=lambda: results.append(cli(*args, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-1500:] for r in results]
    rows = (tmp_path / "live" / "plots" / "metrics" / "dev" / "accuracy.tsv").read_text().splitlines()
    assert len(rows) == 1 + 2  # a header and one row per epoch: one run's curve, not both
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------- 3. corrupt teacher weights never give NaN labels
def _teacher_copy(src: Path, dst: Path, digests: bool = True) -> Path:
    """A copy of a saved model folder; `digests` False: as a folder saved before distillery recorded its weights'
    SHA-256 (or by another tool), so that the loader's own checks are what meets the damage."""
    shutil.copytree(src, dst)
    if not digests:
        for name in ("distillery.json", "student.json"):
            if (dst / name).is_file():
                info = json.loads((dst / name).read_text())
                info.pop("weights_sha256", None)
                (dst / name).write_text(json.dumps(info))
    return dst


@pytest.mark.parametrize("damage", ["tail", "truncated", "garbage"])
@pytest.mark.parametrize("digests", [True, False])
def test_damaged_teacher_weights_are_named_and_nothing_is_stored(tmp_path, tiny_teacher, sst2_prepared, damage,
                                                                 digests):
    t = _teacher_copy(tiny_teacher, tmp_path / "teacher", digests)
    w = t / "model.safetensors"
    data = bytearray(w.read_bytes())
    if damage == "tail":  # the case: the last 100 bytes overwritten
        data[-100:] = b"\xff" * 100
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"\x00garbage" * 64)
    w.write_bytes(bytes(data))
    r = cli("soft-labels", "--teacher", str(t), "--prepared", str(sst2_prepared), "--augmented", "",
            "--out", "logits", "--store", "store", "--metrics", "m.json", cwd=tmp_path)
    line = one_line(r)
    expect = "does not match the SHA-256 recorded when it was saved" if digests else ("NaN", "cannot load")
    assert line.startswith(f"error: {w}: ") and (expect in line if digests else any(e in line for e in expect)), line
    assert not (tmp_path / "logits").exists() and not (tmp_path / "m.json").exists()
    assert not list((tmp_path / "store").rglob("part-*.npz")) if (tmp_path / "store").exists() else True


def test_non_finite_logits_are_refused_where_they_are_made(tmp_path, tiny_teacher):
    import torch

    from distillery.logits.label import label_texts
    from distillery.logits.store import LogitStore
    from distillery.teacher.train import load_teacher

    model, tok, _ = load_teacher(tiny_teacher)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))  # as a diverged teacher would answer
    store = LogitStore(tmp_path / "store", "fp", 2)
    with pytest.raises(DistilleryError, match=r"teacher-file: the teacher gives NaN or infinite logits .* re-run "
                                              r"`distillery teacher`, nothing was stored"):
        label_texts(model, tok, ["00000000000000a1"], ["a fine film"], None, store, 64, 64, bf16=False,
                    where="teacher-file")
    assert not list((tmp_path / "store").rglob("part-*.npz"))


def test_a_teacher_with_nan_weights_is_refused_on_load(tmp_path, tiny_teacher):
    import torch
    from transformers import AutoModelForSequenceClassification

    from distillery.teacher.train import load_teacher

    t = _teacher_copy(tiny_teacher, tmp_path / "t", digests=False)  # saved by another tool: no digests to check
    model = AutoModelForSequenceClassification.from_pretrained(t)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    model.save_pretrained(t)
    with pytest.raises(DistilleryError, match=rf"{t / 'model.safetensors'}: weight classifier.weight holds NaN"):
        load_teacher(t)


# ----------------------------------------------------------- 4. a store part carries its fingerprint and is checked
def test_a_part_copied_from_another_teachers_store_is_never_served(tmp_path, capfd):
    from distillery.logits.store import LogitStore

    keys = np.array([1, 2, 3], dtype=np.uint64)
    a = LogitStore(tmp_path, "teacher-a", 2)
    a.add(keys, {"logits": np.ones((3, 2), np.float32)})
    (part,) = (tmp_path / "teacher-a" / "fp32").glob("part-*.npz")
    b_dir = tmp_path / "teacher-b" / "fp32"
    b_dir.mkdir(parents=True)
    shutil.copy(part, b_dir / part.name)  # same name, same bytes: the checksum alone cannot tell
    b = LogitStore(tmp_path, "teacher-b", 2)
    assert not b.lookup(keys)[0].any() and b.discarded == [str(b_dir / part.name)]
    assert f"warning: {b_dir / part.name}: made by teacher fingerprint teacher-a, not this store's teacher-b" \
        in capfd.readouterr().err
    assert LogitStore(tmp_path, "teacher-a", 2).lookup(keys)[0].all()  # A's own store still serves it


def test_a_part_without_a_fingerprint_is_relabelled(tmp_path, capfd):
    from distillery.logits.arrays import PART_HASH, digest, npz_bytes
    from distillery.logits.store import LogitStore

    d = tmp_path / "fp" / "fp32"
    d.mkdir(parents=True)
    data = npz_bytes(keys=np.array([1], np.uint64), logits=np.ones((1, 2), np.float16))  # as an older version wrote
    (d / f"part-{digest(data)[:PART_HASH]}.npz").write_bytes(data)
    s = LogitStore(tmp_path, "fp", 2)
    assert not s.lookup(np.array([1], np.uint64))[0].any() and len(s.discarded) == 1
    assert "carries no teacher fingerprint" in capfd.readouterr().err


# ------------------------------------------------------------------- 5. a teacher's tokenizer must be its own
def test_a_teacher_without_tokenizer_files_is_refused(tmp_path, tiny_teacher, sst2_prepared):
    t = _teacher_copy(tiny_teacher, tmp_path / "teacher")
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (t / f).unlink(missing_ok=True)
    r = cli("soft-labels", "--teacher", str(t), "--prepared", str(sst2_prepared), "--augmented", "",
            "--out", "logits", "--store", "store", "--metrics", "m.json", cwd=tmp_path)
    assert one_line(r).startswith(f"error: teacher {t}: no tokenizer files (tokenizer.json, vocab.txt, ...) in {t}")
    assert not (tmp_path / "logits").exists()


def test_a_tokenizer_that_does_not_fit_the_embedding_is_refused(tmp_path, tiny_teacher):
    from distillery.teacher.train import load_teacher

    t = _teacher_copy(tiny_teacher, tmp_path / "teacher")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (t / f).unlink(missing_ok=True)
    (t / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "film"]) + "\n")
    with pytest.raises(DistilleryError, match=r"the tokenizer in .* has 7 tokens but the model's embedding has "
                                              r"\d+ rows; use the tokenizer the model was trained with"):
        load_teacher(t)


# -------------------------------------------------------------- 6. the README's test command works as typed
def test_pytest_as_typed_finds_the_tests_package(tmp_path):
    """`pytest` (the console script, not `python -m pytest`) puts the repository on sys.path (pyproject's
    `pythonpath`), so `from tests.conftest import ...` imports in a fresh shell."""
    exe = Path(sys.executable).with_name("pytest")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    r = subprocess.run([str(exe), "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider", "tests/test_params.py"],
                       cwd=REPO, capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "error" not in r.stdout.lower(), r.stdout[-2000:] + r.stderr[-2000:]


def test_ci_runs_the_readmes_commands_as_written():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "-m venv" in ci and "readme_block" in ci  # a fresh venv, then the README's own blocks
    for section in ("## Setup (one command)", "## Tests (one command)"):
        assert section in readme and section in ci


# --------------------------------------------------------- 7. every sweep the README shows parses as DVC parses it
def test_every_readme_sweep_override_applies_to_params_yaml(tmp_path):
    import shlex

    from dvc.utils.hydra import apply_overrides

    lines = [ln.split("#")[0] for ln in readme_block("## Sweep a parameter").splitlines() if "dvc exp run" in ln]
    assert len(lines) >= 4
    checked = 0
    for line in lines:
        words = [w.rstrip(";") for w in shlex.split(line.replace("$lr", "0.002"))]
        sets = [words[i + 1] for i, w in enumerate(words) if w in ("-S", "--set-param")]
        for s in sets:
            shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
            s = s.split(",")[0] if "=" in s and "," in s.split("=", 1)[1] else s  # a queued sweep: its first point
            apply_overrides(tmp_path / "params.yaml", [s])  # raises as `dvc exp run -S` does
            key, value = s.lstrip("+").split("=", 1)
            node = yaml.safe_load((tmp_path / "params.yaml").read_text())
            for part in key.split("."):
                node = node[part]
            assert str(node) == value, (line, node)
            checked += 1
    assert checked >= 4


def test_the_readme_says_which_form_overrides_an_inherited_setting():
    text = (REPO / "README.md").read_text(encoding="utf-8").split("## Sweep a parameter")[1].split("\n## ")[0]
    assert "`++key=value`" in text and "override an inherited setting with `++`" in text


def test_the_readmes_students_build_and_its_distill_command_runs(tmp_path, sst2_prepared, tiny_teacher, logits):
    """The 'Add a student' blocks are valid students as written, and its `distillery distill` line runs."""
    import shlex

    blocks = yaml.safe_load(readme_block("## Add a student", "yaml"))["students"]
    for name, block in blocks.items():
        make_student(name, **block)
    doc = repo_params()
    doc["distill"]["bilstm"].update(transfer_set="train", epochs=1)  # the family's defaults, small: the block as written
    doc["distill"]["common"].update(max_examples=100)
    doc["soft_labels"]["features"] = []
    doc["students"] = blocks
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Add a student")[1]
    cmd = next(c for c in section.split("`") if c.startswith("distillery distill --name"))
    r = cli(*shlex.split(cmd)[1:], "--prepared", str(sst2_prepared), "--teacher", str(tiny_teacher),
            "--logits", str(logits / "logits"), "--augmented", "", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((tmp_path / "models" / "students" / "bilstm_hinton" / "student.json").read_text())
    assert info["training"]["lr"] == 0.002 and info["config"]["dropout"] == 0.2


# ----------------------------------------------------------- 8. the README says how to install torch, CPU and CUDA
def test_readme_gives_the_cpu_and_the_cuda_torch_install():
    setup = (REPO / "README.md").read_text(encoding="utf-8").split("## Setup (one command)")[1].split("\n## ")[0]
    assert "https://download.pytorch.org/whl/cpu" in setup and "https://download.pytorch.org/whl/cu" in setup


# --------------------------------------------------------------------------------- errors that are one line now
@pytest.mark.parametrize("args,expect", [
    (["prepare", "--set", "task=5.5"], "error: param prepare.task: must be text, got 5.5"),
    (["teacher", "--set", "base_model=true"], "error: param teacher.base_model: must be text, got True"),
    (["teacher", "--set", "bf16=perhaps"], "error: param teacher.bf16: must be true or false, got 'perhaps'"),
    (["soft-labels", "--set", "features=cls@1"], "error: param soft_labels.features: must be a list of texts, got "
     "'cls@1' (a list is written [a, b])"),
    (["distill", "--name", "s", "--set", "model_args.hidden_size=big"],
     "error: param students.s.model_args.hidden_size: must be a whole number, got 'big'"),
    (["distill", "--name", "s", "--set", "model_args.hidden_sise=8"],
     "error: param students.s.model_args.hidden_sise: bilstm has no such setting; choose from "),
])
def test_wrong_types_are_one_line_errors(tmp_path, args, expect):
    write_params(tmp_path, {"s": {"model": "bilstm", "losses": {"ce": 1}}})
    assert one_line(cli(*args, cwd=tmp_path)).startswith(expect)


def test_a_typod_family_group_is_refused(tmp_path):
    doc = repo_params()
    doc["distill"]["bilstmm"] = {"lr": 0.5}
    doc["students"] = {"s": {"model": "bilstm", "losses": {"ce": 1}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc))
    assert one_line(cli("distill", "--name", "s", cwd=tmp_path)) == (
        "error: param distill.bilstmm: not a family group; use bilstm, common, fastbert, mtdnn, seq2seq, transformer")


def test_metrics_that_is_a_folder_is_refused_before_out_is_written(tmp_path):
    (tmp_path / "m").mkdir()
    line = one_line(cli(*prepare_args("p", "m"), cwd=tmp_path))
    assert line == "error: --metrics m: is a folder; give a file name (e.g. m/metrics.json)"
    assert not (tmp_path / "p").exists()


def test_a_text_of_nul_characters_is_empty(tmp_path):
    d = tmp_path / "glue"
    d.mkdir()
    (d / "train.tsv").write_text("sentence\tlabel\nfine\t1\n\x00\x00\x00\t0\n", encoding="utf-8")
    (d / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n", encoding="utf-8")
    line = one_line(cli("prepare", "--set", f"data_dir={d}", "--out", "p", "--metrics", "m.json", cwd=tmp_path))
    assert line.startswith(f"error: {d / 'train.tsv'}:3: empty text (nothing visible")


@pytest.mark.parametrize("text,expect", [
    (b"Ein Hund.\rEine Katze.\rZwei Hunde.\r", "train.de:1: bare CR line endings"),
    (b"Ein Hund.\nEine Katze.\nZwei Hunde.\nVier\rBeine.\n", "train.de:4: a carriage return (CR) inside the sentence"),
])
def test_multi30k_carriage_returns_name_the_file_and_line(tmp_path, text, expect):
    from distillery.generation.data import read_lines

    (tmp_path / "train.de").write_bytes(text)
    with pytest.raises(DistilleryError, match=r"train\.de:\d"):
        read_lines(tmp_path / "train.de")
    try:
        read_lines(tmp_path / "train.de")
    except DistilleryError as e:
        assert str(e).startswith(f"{tmp_path}/{expect}")


def test_crlf_multi30k_still_reads(tmp_path):
    from distillery.generation.data import read_lines

    (tmp_path / "a.de").write_bytes(b"Ein Hund.\r\nEine Katze.\r\n")
    assert read_lines(tmp_path / "a.de") == ["Ein Hund.", "Eine Katze."]


@pytest.mark.parametrize("manifest,expect", [
    ({"format": 2, "shards": []}, "no shards listed"),
    ({"format": 2}, "no shards listed"),
    ([1, 2], "not a manifest"),
    ({"format": "2", "shards": [{"file": "shard-00000.npz", "sha256": "x"}]}, "format '2', but this version reads 2"),
    ({"format": 2, "shards": [{"file": "../x.npz", "sha256": "x"}]}, "shards[0] must name a file in this folder"),
])
def test_a_bad_manifest_is_one_line(tmp_path, manifest, expect):
    from distillery.logits.artifact import Logits

    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DistilleryError) as e:
        Logits(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / 'manifest.json'}: ") and expect in str(e.value)


@pytest.mark.parametrize("message", [
    "Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: \"No space left on device\" })",
    "[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: file write failed",
])
def test_a_full_disk_inside_a_library_is_named(tmp_path, message):
    from distillery.io import atomic_dir

    with pytest.raises(DistilleryError, match=rf"{tmp_path / 'out'}: cannot write \(no space left on the device\)"):
        with atomic_dir(tmp_path / "out", "teacher"):
            raise RuntimeError(message)
    assert list(tmp_path.iterdir()) == []


def test_an_unsafe_pickle_is_refused_naming_the_file(tmp_path):
    import pickle

    from distillery.students import load_student, save_student
    from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    save_student(BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=8, hidden_size=4, mlp_size=4)), tok,
                 tmp_path / "built", {"name": "s"})
    _teacher_copy(tmp_path / "built", tmp_path / "s", digests=False)  # no digest to stop it first: the loader must

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    (tmp_path / "s" / "student.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DistilleryError) as e:
        load_student(tmp_path / "s")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 's' / 'student.pt'}: cannot load (it holds pickled code, which distillery "
                          "never runs)") and "weights_only=False" not in msg and "\n" not in msg
    assert not (tmp_path / "pwned").exists()


def test_an_offline_hub_id_fails_at_once_naming_the_param(tmp_path):
    import time

    t0 = time.perf_counter()
    line = one_line(cli("teacher", "--set", "base_model=nobody/no-such-model", cwd=tmp_path, env=OFFLINE))
    assert line.startswith("error: param teacher.base_model: 'nobody/no-such-model' is not a local folder, not in the "
                           "Hugging Face cache, and the Hub cannot be reached from here")
    line = one_line(cli("prepare", "--set", "data_dir=null", "--set", "hf_dataset=nyu-mll/glue", "--set",
                        "hf_config=sst2", cwd=tmp_path, env=OFFLINE))
    assert line.startswith("error: param prepare.hf_dataset: 'nyu-mll/glue' is not a local folder")
    assert time.perf_counter() - t0 < 60  # two commands; each took 29-44 s of retries before
