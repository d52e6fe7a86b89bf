"""Issue 30's cases and issue 48's (round two, `round_two`), run as a careless or hostile user would: each a `distillery` command (or the README's
own command) in a scratch workspace with a tiny teacher and real SST-2 rows. Prints one markdown row per
case: the command, its exit status, the first line of stderr and what it left behind (files created,
changed or deleted in the workspace, scratch included).

    python bench/fault_table.py > docs/reliability-table.md     # about 4 minutes on 2 cores

The full-disk cases mount a 1 MB tmpfs and need root; they are skipped (and say so) elsewhere.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GLUE = REPO.parent / "shared" / "data" / "glue"
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
ROWS: list[tuple] = []


def snapshot(ws: Path) -> dict:
    return {str(p.relative_to(ws)): (p.stat().st_size, p.stat().st_mtime_ns) for p in ws.rglob("*") if p.is_file()}


def left_behind(before: dict, after: dict, skip: tuple = ()) -> str:
    new = sorted(k for k in after if k not in before and not k.startswith(skip))
    gone = sorted(k for k in before if k not in after and not k.startswith(skip))
    changed = sorted(k for k in after if k in before and after[k] != before[k] and not k.startswith(skip))
    parts = []
    for label, names in (("new", new), ("changed", changed), ("deleted", gone)):
        if names:
            shown = ", ".join(names[:3]) + (f" +{len(names) - 3}" if len(names) > 3 else "")
            parts.append(f"{label}: {shown}")
    return "; ".join(parts) or "nothing"


def run(case: str, args: list[str], ws: Path, shown: str | None = None, env: dict | None = None,
        skip: tuple = (".cache/",), extra: str = "") -> subprocess.CompletedProcess:
    before = snapshot(ws)
    argv = args if args[0] in ("pytest", "dvc", sys.executable) else [sys.executable, "-m", "stages.cli", *args]
    r = subprocess.run(argv, cwd=ws, capture_output=True, text=True, env={**ENV, **(env or {})})
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith(("error", "warning", "ERROR"))]
    first = lines[0] if lines else (r.stderr.strip().splitlines() or [""])[-1]
    first = first.replace(str(ws) + "/", "").replace(str(ws), ".")
    if r.returncode == 0 and not lines:
        first = "(none)" if not r.stderr.strip() else first
    cli = argv[:3] == [sys.executable, "-m", "stages.cli"]
    ROWS.append((case, shown or " ".join(["distillery", *args] if cli else args), r.returncode, first[:220],
                 left_behind(before, snapshot(ws), skip) + (f" ({extra})" if extra else "")))
    return r


def setup(ws: Path) -> dict:
    """A tiny teacher, a prepared SST-2 sample, its logits and a trained BiLSTM: what the cases damage."""
    from tests.conftest import make_tiny_teacher, repo_params

    import yaml

    doc = repo_params()
    doc["prepare"].update(data_dir=str(GLUE / "SST-2"), max_train=300, max_dev=100)
    doc["soft_labels"]["features"] = []
    doc["distill"]["bilstm"].update(epochs=2, transfer_set="train")
    doc["distill"]["common"].update(max_examples=200)
    doc["students"] = {"s": {"model": "bilstm", "losses": {"mse_logits": 1.0},
                             "model_args": {"hidden_size": 8, "mlp_size": 8}}}
    doc["teacher"].update(base_model=str(make_tiny_teacher(ws / "base")), epochs=1, bf16=False, lr=1e-3)
    (ws / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for cmd in (["prepare"], ["teacher"], ["soft-labels", "--augmented", ""], ["distill", "--name", "s",
                "--augmented", ""], ["export", "--name", "s"]):
        r = subprocess.run([sys.executable, "-m", "stages.cli", *cmd], cwd=ws, capture_output=True, text=True, env=ENV)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
    return doc


def cases(ws: Path) -> None:

    # 1. --out at folders that are not this stage's output
    project = ws / "project"
    (project / "sub").mkdir(parents=True)
    for f in ("params.yaml", "notes.md", "sub/keep.txt"):
        (project / f).write_text("the user's")
    run("1 `--out` a project folder", ["prepare", "--out", "project"], ws)
    (ws / "precious").mkdir()
    (ws / "precious" / "notes.txt").write_text("mine")
    run("1 `--out` a folder of notes", ["prepare", "--out", "precious"], ws)
    run("1 `--out .`", ["prepare", "--out", "."], ws)
    run("1 `--out` another stage's output", ["augment", "--out", "data/prepared"], ws)
    run("1 `--out` its own previous output", ["prepare"], ws, skip=(".cache/", "data/prepared/"),
        extra="replaced data/prepared as a whole")

    # 2. a killed distill keeps the previous model and curves together
    live = ws / "dvclive/students/s/plots/metrics/dev/accuracy.tsv"
    curve = live.read_text()
    before = snapshot(ws)
    p = subprocess.Popen([sys.executable, "-m", "stages.cli", "distill", "--name", "s", "--augmented", "",
                          "--set", "epochs=2000"], cwd=ws, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(12)  # a few epochs in: its curves so far sit in its scratch folder
    p.send_signal(signal.SIGKILL)
    p.wait()
    ROWS.append(("2 `distill` killed (SIGKILL) mid-run", "distillery distill --name s --set epochs=2000; kill -9",
                 p.returncode, "(killed)", left_behind(before, snapshot(ws), (".cache/",)) +
                 f" (previous curves {'kept' if live.read_text() == curve else 'LOST'})"))
    run("2 the next run after the kill", ["distill", "--name", "s", "--augmented", ""], ws,
        skip=(".cache/", "models/students/s/", "dvclive/students/s/", "metrics/"),
        extra="model, curves and metrics replaced together")
    concurrent = [subprocess.Popen([sys.executable, "-m", "stages.cli", "distill", "--name", "s", "--augmented", ""],
                                   cwd=ws, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    codes = [c.wait() for c in concurrent]
    rows = len(live.read_text().splitlines()) - 1
    ROWS.append(("2 two concurrent `distill` into one output", "distillery distill --name s & distillery distill "
                 "--name s", max(codes), "(none)", f"dev/accuracy.tsv has {rows} rows for 2 epochs"))

    # 3. corrupt teacher weights; 5. a teacher without its tokenizer
    for label, damage in (("3 teacher weights: last 100 bytes overwritten", lambda b: b[:-100] + b"\xff" * 100),
                          ("teacher weights truncated", lambda b: b[: len(b) // 2]),
                          ("teacher weights garbage", lambda b: b"\x00garbage" * 64)):
        t = ws / "bad_teacher"
        shutil.rmtree(t, ignore_errors=True)
        shutil.copytree(ws / "models/teacher", t)
        (t / "model.safetensors").write_bytes(damage((t / "model.safetensors").read_bytes()))
        run(label, ["soft-labels", "--teacher", "bad_teacher", "--augmented", "", "--out", "bad_logits"], ws,
            skip=(".cache/", "bad_teacher/"))
    t = ws / "bad_teacher"
    shutil.rmtree(t)
    shutil.copytree(ws / "models/teacher", t)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (t / f).unlink(missing_ok=True)
    run("5 teacher without tokenizer files", ["soft-labels", "--teacher", "bad_teacher", "--augmented", "",
                                                "--out", "bad_logits"], ws, skip=(".cache/", "bad_teacher/"))
    (t / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nfilm\n")
    run("5 teacher whose vocabulary does not fit its embedding", ["soft-labels", "--teacher", "bad_teacher",
        "--augmented", "", "--out", "bad_logits"], ws, skip=(".cache/", "bad_teacher/"))

    # 4. a store part copied from another teacher's store
    store = ws / ".cache/logits"
    fp_dirs = [d for d in store.iterdir() if d.is_dir()]
    other = ws / "other_teacher"  # another teacher: the same one with its classifier moved a little
    shutil.copytree(ws / "models/teacher", other)
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(other)
    with torch.no_grad():
        model.classifier.bias += 1.0
    model.save_pretrained(other)
    from distillery.teacher.models import DIGESTS, weight_digests

    info = json.loads((other / "distillery.json").read_text())  # a teacher of its own: its weights' own digests
    (other / "distillery.json").write_text(json.dumps({**info, DIGESTS: weight_digests(other)}))
    from distillery.logits.fingerprint import teacher_fingerprint

    fp_b = teacher_fingerprint(other, json.loads((ws / "data/logits/manifest.json").read_text())["max_seq_len"])
    for prec in fp_dirs[0].iterdir():  # fp32, or bf16 where this CPU has it
        (store / fp_b / prec.name).mkdir(parents=True, exist_ok=True)
        for part in prec.glob("part-*.npz"):
            shutil.copy(part, store / fp_b / prec.name / part.name)
    r = run("4 store parts copied from another teacher's store", ["soft-labels", "--teacher", "other_teacher",
            "--augmented", "", "--out", "other_logits", "--metrics", "other.json"], ws, skip=(".cache/",))
    m = json.loads((ws / "other.json").read_text()) if (ws / "other.json").is_file() else {}
    ROWS[-1] = ROWS[-1][:4] + (ROWS[-1][4] + f" ({m.get('labelled')} labelled, {m.get('reused')} reused)",)

    # 6, 7: the README's commands as written
    run("6 the README's test command, typed",
        ["pytest", "--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider", "tests/test_params.py"],
        REPO, shown="pytest --collect-only -q tests/test_params.py", env={"PATH": f"{Path(sys.executable).parent}:"
                                                                               f"{os.environ['PATH']}"})
    ROWS[-1] = ROWS[-1][:3] + (ROWS[-1][3] if ROWS[-1][2] else "(none): tests collected",) + ("nothing",)
    code = ("from dvc.utils.hydra import apply_overrides; import sys; apply_overrides('params.yaml', [sys.argv[1]])")
    for form in ("students.bilstm_ce.lr=0.002", "++students.bilstm_ce.lr=0.002"):
        shutil.copy(REPO / "params.yaml", ws / "sweep.yaml")
        r = subprocess.run([sys.executable, "-c", code.replace("params.yaml", "sweep.yaml"), form], cwd=ws,
                           capture_output=True, text=True)
        why = (r.stderr.strip().splitlines() or ["(none)"])[-1][:200] if r.returncode else "(none)"
        ROWS.append((f"7 sweep override `{form}` (DVC's own override code)", f"dvc exp run -S '{form}'",
                     r.returncode, why, "params.yaml changed" if r.returncode == 0 else "nothing"))

    # errors that are one line
    _typo(ws)
    run("typo'd family group `distill.bilstmm`", ["distill", "--name", "s", "--params", "typo.yaml"], ws,
        shown="distillery distill --name s (params with distill.bilstmm: {lr: 0.5})")
    run("`--params nope.yaml`", ["prepare", "--params", "nope.yaml"], ws)
    run("`--set task=5`", ["prepare", "--set", "task=5"], ws)
    run("`--set base_model=123`", ["teacher", "--set", "base_model=123"], ws)
    run("`--set model_args.hidden_size=big`", ["distill", "--name", "s", "--set", "model_args.hidden_size=big"], ws)
    run("`--set bf16=perhaps`", ["teacher", "--set", "bf16=perhaps"], ws)
    run("`--set features=cls@1`", ["soft-labels", "--set", "features=cls@1"], ws)
    for label, manifest in (("manifest `shards: []`", {"format": 2, "shards": []}),
                            ("manifest without `shards`", {"format": 2}), ("manifest a list", [1]),
                            ('manifest `format: "2"`', {"format": "2", "shards": [{"file": "shard-00000.npz",
                                                                                   "sha256": "0"}]})):
        bad = ws / "bad_manifest"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(ws / "data/logits", bad)
        (bad / "manifest.json").write_text(json.dumps(manifest))
        run(label, ["distill", "--name", "s", "--augmented", "", "--logits", "bad_manifest"], ws,
            skip=(".cache/", "bad_manifest/"))
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    shutil.copytree(ws / "models/students/s", ws / "models/students/evil")
    (ws / "models/students/evil/student.pt").write_bytes(pickle.dumps(Evil()))
    run("unsafe pickle as a student's weights", ["export", "--name", "evil"], ws,
        extra="PWNED " + ("exists" if (ws / "PWNED").exists() else "not created"))
    t0 = time.perf_counter()
    run("offline Hub id for the teacher", ["teacher", "--set", "base_model=nobody/no-such-model"], ws)
    run("offline Hub dataset", ["prepare", "--set", "data_dir=null", "--set", "hf_dataset=nyu-mll/glue",
                                "--set", "hf_config=sst2"], ws, extra=f"both in {time.perf_counter() - t0:.1f} s")
    g = ws / "nul"
    g.mkdir()
    (g / "train.tsv").write_text("sentence\tlabel\nfine\t1\n\x00\x00\x00\t0\n")
    (g / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    run("a text of NUL characters", ["prepare", "--set", "data_dir=nul", "--out", "nul_prep"], ws)
    m30 = ws / "m30"
    m30.mkdir()
    src = (REPO.parent / "shared/data/multi30k")
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("de", "en"):
            lines = (src / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[:20]
            (m30 / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    gen_params = REPO / "studies/cmlm/params.yaml"
    import yaml

    gp = yaml.safe_load(gen_params.read_text())
    gp["prepare"].update(data_dir="m30")
    (ws / "gen.yaml").write_text(yaml.safe_dump(gp))
    de = (m30 / "train.de").read_bytes()
    (m30 / "train.de").write_bytes(de.replace(b"\n", b"\r"))
    run("Multi30k with bare-CR line endings", ["prepare", "--params", "gen.yaml", "--out", "gen_prep"], ws)
    lines = de.decode().splitlines()
    lines[3] = lines[3].replace(" ", "\r", 1)
    (m30 / "train.de").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run("a CR inside a German line", ["prepare", "--params", "gen.yaml", "--out", "gen_prep"], ws)
    (ws / "mdir").mkdir()
    run("`--metrics` an existing folder", ["prepare", "--out", "p2", "--metrics", "mdir"], ws)
    _card(ws)
    _full_disk(ws)
    round_two(ws)


def _own(ws: Path, name: str, files: dict, fmt: str = "", **params) -> list[str]:
    """A folder of the user's own split files and the `prepare --set` arguments that read it."""
    d = ws / name
    d.mkdir(exist_ok=True)
    for f, content in files.items():
        if hasattr(content, "to_parquet"):
            content.to_parquet(d / f)
        else:
            (d / f).write_bytes(content if isinstance(content, bytes) else content.encode())
    train, dev = (list(files) * 2)[:2] if files else (None, None)
    sets = {"task": "own", "data_dir": name, "train_file": train, "dev_file": dev, "text_column": "text",
            "label_column": "label", "max_train": 0, **params}
    return ["prepare", "--out", f"{name}_prep", "--metrics", f"{name}.json",
            *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]


def _killed(case: str, args: list[str], ws: Path, until) -> None:
    """Run a command and kill it (SIGKILL) once `until()` holds (at most 120 s); the row shows the first thing it
    said about resuming (or that it said nothing: a fresh start) and whether its resume state is left."""
    p = subprocess.Popen([sys.executable, "-m", "stages.cli", *args], cwd=ws, env={**ENV, "PYTHONUNBUFFERED": "1"},
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.perf_counter()
    while not until() and time.perf_counter() - t0 < 120 and p.poll() is None:
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    out = p.communicate()[0]
    said = [ln for ln in out.splitlines() if ln.startswith(("resuming", "warning", "error"))]
    first = (said[0] if said else "(nothing: started from the beginning)").replace(str(ws) + "/", "")
    state = ws / ".s48.resume" / "state.pt"
    ROWS.append((case, "distillery " + " ".join(args) + f"; kill -9 after {time.perf_counter() - t0:.0f} s",
                 p.returncode, first[:220], f".s48.resume/state.pt {'left' if state.is_file() else 'absent'}"))


def round_two(ws: Path) -> None:
    """Issue 48's cases: each numbered as the issue numbers it."""
    import numpy as np
    import pandas as pd

    # 1. --metrics over a file that is not this stage's metrics
    (ws / "d").mkdir()
    shutil.copy(GLUE / "SST-2" / "dev.tsv", ws / "d" / "dev.csv")
    (ws / "notes.md").write_text("the user's notes")
    for target in ("params.yaml", "d/dev.csv", "notes.md", "metrics/teacher.json"):
        run(f"48.1 `--metrics {target}`", ["prepare", "--out", "out48", "--metrics", target], ws)
    run("48.1 `--metrics` its own previous metrics", ["prepare"], ws, skip=(".cache/", "data/prepared/"),
        extra="replaced metrics/prepare.json")

    # 2. evaluate claims its output folder
    (ws / "report").mkdir()
    for f in ("table.md", "summary.json", "notes.txt"):
        (ws / "report" / f).write_text("the user's")
    run("48.2 `evaluate --out` a folder of the user's", ["evaluate", "--out", "report"], ws)
    run("48.2 `evaluate --out .`", ["evaluate", "--out", "."], ws)
    t0 = time.perf_counter()
    run("48.14 `evaluate --out` an existing file", ["evaluate", "--out", "notes.md"], ws,
        extra=f"refused after {time.perf_counter() - t0:.1f} s, before any work")
    run("48.2 `evaluate` (its own folder, new)", ["evaluate"], ws, skip=(".cache/", ".teacher-onnx"))
    run("48.2 `evaluate` again over its own previous output", ["evaluate"], ws, skip=(".cache/",),
        extra="replaced metrics/eval as a whole")

    # 3. a live folder with a user's files below its top level
    live = ws / "results"
    shutil.copytree(ws / "dvclive/students/s", live)
    (live / ".distillery-output").unlink(missing_ok=True)
    (live / "plots" / "fig1.svg").write_text("<svg/>")
    (live / "plots" / "notes.txt").write_text("mine")
    run("48.3 `--live-dir` whose plots/ holds the user's fig1.svg and notes.txt",
        ["distill", "--name", "s", "--augmented", "", "--live-dir", "results"], ws)

    # 4. a student key that would be a path
    import yaml

    doc = yaml.safe_load((ws / "params.yaml").read_text())
    doc["students"]["../teacher"] = dict(doc["students"]["s"])
    (ws / "pathkey.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for args in (["prepare"], ["distill", "--name", "s"], ["evaluate"]):
        run(f"48.4 student key `../teacher`: `{args[0]}`", [*args, "--params", "pathkey.yaml"], ws,
            shown=f"distillery {' '.join(args)} (params.yaml with students: ../teacher)")

    # 5. a killed distill, its teacher and logits replaced under the same paths, then run again
    shutil.copytree(ws / "models/teacher", ws / "t48")
    shutil.copytree(ws / "data/logits", ws / "l48")
    args = ["distill", "--name", "s", "--augmented", "", "--teacher", "t48", "--logits", "l48", "--out", "s48",
            "--metrics", "s48.json", "--live-dir", "s48_live", "--set", "epochs=5000", "--checkpoint-minutes", "0.02"]
    state = ws / ".s48.resume" / "state.pt"
    _killed("48.5 `distill` killed mid-run (a checkpoint every 1.2 s)", args, ws, state.is_file)
    saved = state.stat().st_mtime_ns if state.is_file() else 0
    _killed("48.5 the same run again, inputs unchanged", args, ws,
            lambda: state.is_file() and state.stat().st_mtime_ns != saved)
    shutil.rmtree(ws / "t48")
    shutil.copytree(ws / "other_teacher", ws / "t48")
    r = subprocess.run([sys.executable, "-m", "stages.cli", "soft-labels", "--teacher", "t48", "--augmented", "",
                        "--out", "l48", "--metrics", "l48.json"], cwd=ws, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    saved = state.stat().st_mtime_ns if state.is_file() else 0
    _killed("48.5 again after its teacher and logits were replaced", args, ws,
            lambda: state.is_file() and state.stat().st_mtime_ns != saved)

    # 6. labels read as what they are
    rows = "".join(f"{t},{lab}\n" for t, lab in (("good", 1), ("bad", 0), ("fine", "1.0"), ("poor", 0), ("nice", 1)))
    run("48.6 integer labels with a `1.0` among them", _own(ws, "own6", {"train.csv": "text,label\n" + rows}), ws,
        skip=(".cache/", "own6"))
    names = json.loads((ws / "own6_prep/task.json").read_text())["label_names"] if (ws / "own6_prep").is_dir() else []
    ROWS[-1] = ROWS[-1][:4] + (f"classes: {names}",)
    run("48.6 a JSON Lines label `[1]`", _own(ws, "own6j", {"train.jsonl": '{"text": "good", "label": 1}\n'
                                                             '{"text": "bad", "label": [1]}\n'}), ws)
    run("48.6 a regression score `2_5`", _own(ws, "own6r", {"train.csv": "text,label\ngood,2.5\nbad,2_5\n"},
                                              problem="regression"), ws)
    frame = pd.DataFrame({"text": [{"a": "good", "b": 1}, {"a": "bad", "b": 2}], "label": [1, 0]})
    run("48.6 a nested Parquet text column", _own(ws, "own6p", {"train.parquet": frame}), ws)

    # 7. a header row in a file said to have none
    run("48.7 `--set columns=[text, label]` on a file with a header",
        [*_own(ws, "own7", {"train.csv": "text,label\n" + rows}), "--set", "columns=[text, label]"], ws,
        skip=(".cache/", "own7"))

    # 8. a key given twice in params.yaml
    text = (ws / "params.yaml").read_text()
    (ws / "twice.yaml").write_text(text + "prepare:\n  max_train: 5\n")
    run("48.8 a second top-level `prepare:`", ["prepare", "--params", "twice.yaml"], ws)
    (ws / "twice2.yaml").write_text(text.replace("prepare:\n", "prepare:\n  seed: 3\n", 1))
    run("48.8 a key twice in one section", ["prepare", "--params", "twice2.yaml"], ws)

    # 9. damage that leaves every value finite
    shutil.rmtree(ws / "t48")
    shutil.copytree(ws / "models/teacher", ws / "t48")
    w = ws / "t48/model.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = bytes(64)
    w.write_bytes(bytes(data))
    run("48.9 64 zeroed bytes in the teacher's weights", ["soft-labels", "--teacher", "t48", "--augmented", "",
                                                         "--out", "l49", "--metrics", "l49.json"], ws,
        skip=(".cache/", "t48/"))

    # 10. readers
    run("48.10 JSON Lines with a byte-order mark", _own(ws, "own10b", {"train.jsonl": b'\xef\xbb\xbf' + "".join(
        f'{{"text": "{t}", "label": {lab}}}\n' for t, lab in (("good", 1), ("bad", 0), ("fine", 1))).encode()}), ws,
        skip=(".cache/", "own10b"))
    run("48.10 a JSON Lines line that is a list", _own(ws, "own10l", {"train.jsonl": '{"text": "good", "label": 1}\n'
                                                                      '["bad", 0]\n'}), ws)
    run("48.10 an empty text on line 3, after a blank line", _own(ws, "own10e", {
        "train.jsonl": '{"text": "good", "label": 1}\n\n{"text": " ", "label": 0}\n'}), ws)
    run("48.10 two columns named `text`", _own(ws, "own10d", {"train.csv": "text,text,label\na,b,1\nc,d,0\n"}), ws)
    for name, make, what in (("own10f", lambda f: os.mkfifo(f), "a FIFO"),
                             ("own10z", lambda f: f.symlink_to("/dev/zero"), "a link to /dev/zero")):
        (ws / name).mkdir()
        make(ws / name / "train.csv")
        run(f"48.10 {what} as the training file", _own(ws, name, {}, train_file="train.csv", dev_file="train.csv"), ws)

    # 11. params read as meant
    run("48.11 `--set max_train=1e3`", ["prepare", "--out", "p11", "--metrics", "p11.json", "--set", "max_train=1e3"],
        ws)
    shutil.copytree(GLUE / "SST-2", ws / "2024", ignore=shutil.ignore_patterns("test*"))
    run("48.11 `--set data_dir=2024` (a folder named 2024)", ["prepare", "--out", "p11b", "--metrics", "p11b.json",
                                                              "--set", "data_dir=2024", "--set", "max_train=300"], ws)
    (ws / "tab.yaml").write_text(text.replace("  max_dev:", "\tmax_dev:", 1))
    run("48.11 a tab in params.yaml", ["prepare", "--params", "tab.yaml"], ws)
    (ws / "latin1.yaml").write_bytes(b"# r\xe9sum\xe9 of the run\n" + text.encode())
    run("48.11 a Latin-1 byte in params.yaml", ["prepare", "--params", "latin1.yaml"], ws)

    # 12. logit shards that pass their checksum but hold the wrong shapes or NaN
    from distillery.logits.arrays import digest, npz_bytes

    with np.load(ws / "data/logits/shard-00000.npz") as z:
        keys, logits = z["keys"], z["logits"]
    for label, k, v in (("fewer rows of logits than keys", keys, logits[:-5]), ("1-D logits", keys, logits[:, 0]),
                        ("NaN logits", keys, np.where(np.arange(len(logits))[:, None] == 7, np.nan, logits)
                         .astype(np.float16))):
        bad = ws / "bad_logits"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(ws / "data/logits", bad)
        raw = npz_bytes(keys=k, logits=v)
        (bad / "shard-00000.npz").write_bytes(raw)
        m = json.loads((bad / "manifest.json").read_text())
        m["shards"][0]["sha256"] = digest(raw)
        (bad / "manifest.json").write_text(json.dumps(m))
        run(f"48.12 a shard with {label} (checksum updated)", ["distill", "--name", "s", "--augmented", "",
                                                               "--logits", "bad_logits"], ws,
            skip=(".cache/", "bad_logits/"))

    # 13. a damaged export at evaluate
    for label, damage in (("garbage", lambda b: b"garbage" * 100), ("truncated", lambda b: b[: len(b) // 2])):
        shutil.rmtree(ws / "ex13", ignore_errors=True)
        shutil.copytree(ws / "exports", ws / "ex13")
        f = ws / "ex13/s/model.onnx"
        f.write_bytes(damage(f.read_bytes()))
        run(f"48.13 {label} `exports/s/model.onnx` at evaluate", ["evaluate", "--exports", "ex13", "--out", "ev13"],
            ws, skip=(".cache/", "ex13/"))

    # 14. a link to its own previous output; the metrics alone on a full disk
    (ws / "prep_link").symlink_to("data/prepared")
    run("48.14 `prepare --out` a link to its own previous output", ["prepare", "--out", "prep_link"], ws,
        skip=(".cache/", "data/prepared/"), extra="replaced data/prepared (the link's target) as a whole")
    _metrics_on_full_disk(ws)


def _metrics_on_full_disk(ws: Path) -> None:
    with _tmpfs(ws, "full", "64k", "48.14 only `--metrics` on a full disk") as small:
        if small is None:
            return
        fd = os.open(small / "filler", os.O_WRONLY | os.O_CREAT)  # fill it: the metrics file finds no room
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        run("48.14 only `--metrics` on a full disk", ["soft-labels", "--augmented", "", "--out", "l14", "--metrics",
                                                       "full/m.json"], ws, skip=(".cache/", "full/"))


@contextlib.contextmanager
def _tmpfs(ws: Path, name: str, size: str, case: str):
    """A tmpfs of `size` mounted at ws/name (root only), unmounted after; None (and a 'skipped' row) elsewhere."""
    if os.geteuid() != 0:
        ROWS.append((case, f"(needs root to mount a {size} tmpfs)", "-", "skipped", "-"))
        yield None
        return
    small = ws / name
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(small)]).returncode != 0:
        ROWS.append((case, "(mount failed)", "-", "skipped", "-"))
        yield None
        return
    try:
        yield small
    finally:
        subprocess.run(["umount", str(small)])


def _typo(ws: Path) -> None:
    import yaml

    doc = yaml.safe_load((ws / "params.yaml").read_text())
    doc["distill"]["bilstmm"] = {"lr": 0.5}
    (ws / "typo.yaml").write_text(yaml.safe_dump(doc))


def _card(ws: Path) -> None:
    import re

    card = (ws / "exports/s/README.md").read_text()
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    code = code.replace("'a gorgeous , witty film'", "' '.join(['film'] * 10_000)") + "\nprint(logits.shape)"
    (ws / "exports/s/usage.py").write_text(code)
    before = snapshot(ws)
    r = subprocess.run([sys.executable, "usage.py"], cwd=ws / "exports/s", capture_output=True, text=True)
    (ws / "exports/s/usage.py").unlink()
    ROWS.append(("the card's usage code, 10,000-word text", "python (card's Use block) in exports/s", r.returncode,
                 (r.stderr.strip().splitlines() or ["(none)"])[-1][:200] if r.returncode else
                 f"(none): logits {r.stdout.strip()}", left_behind(before, snapshot(ws))))


def _full_disk(ws: Path) -> None:
    with _tmpfs(ws, "small", "1m", "full disk during teacher / distill") as small:
        if small is None:
            return
        run("full disk during `teacher` (1 MB tmpfs)", ["teacher", "--out", "small/teacher", "--live-dir",
                                                        "small/live", "--metrics", "small/t.json"], ws)
        run("full disk during `distill` (1 MB tmpfs)", ["distill", "--name", "s", "--augmented", "", "--out",
                                                        "small/s", "--metrics", "small/s.json", "--live-dir",
                                                        "small/slive"], ws)
        ROWS[-1] = ROWS[-1][:4] + (ROWS[-1][4] + f"; tmpfs holds {sorted(p.name for p in small.iterdir())}",)


def main() -> None:
    ws = Path(tempfile.mkdtemp(prefix="distillery-faults-"))
    try:
        t0 = time.perf_counter()
        setup(ws)
        try:
            cases(ws)
        finally:  # the rows so far, even where a case broke the script
            print_rows(t0)
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def print_rows(t0: float) -> None:
    print(f"<!-- bench/fault_table.py, {time.strftime('%Y-%m-%d %H:%M')} UTC, {time.perf_counter() - t0:.0f} s -->")
    print("| case | command | exit | first line of stderr | left behind in the workspace |")
    print("|---|---|---|---|---|")
    for case, cmd, code, first, left in ROWS:
        cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
        print(f"| {cell(case)} | `{cell(cmd)}` | {code} | {cell(first)} | {cell(left)} |")


if __name__ == "__main__":
    main()
