"""Issue 30's cases, run as a careless or hostile user would: each a `distillery` command (or the README's
own command) in a scratch workspace with a tiny teacher and real SST-2 rows. Prints one markdown row per
case: the command, its exit status, the first line of stderr and what it left behind (files created,
changed or deleted in the workspace, scratch included).

    python bench/fault_table.py > docs/reliability-table.md     # about 4 minutes on 2 cores

The full-disk cases mount a 1 MB tmpfs and need root; they are skipped (and say so) elsewhere.
"""

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
    if os.geteuid() != 0:
        ROWS.append(("full disk during teacher / distill", "(needs root to mount a 1 MB tmpfs)", "-", "skipped", "-"))
        return
    small = ws / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)]).returncode != 0:
        ROWS.append(("full disk during teacher / distill", "(mount failed)", "-", "skipped", "-"))
        return
    try:
        run("full disk during `teacher` (1 MB tmpfs)", ["teacher", "--out", "small/teacher", "--live-dir",
                                                        "small/live", "--metrics", "small/t.json"], ws)
        run("full disk during `distill` (1 MB tmpfs)", ["distill", "--name", "s", "--augmented", "", "--out",
                                                        "small/s", "--metrics", "small/s.json", "--live-dir",
                                                        "small/slive"], ws)
        ROWS[-1] = ROWS[-1][:4] + (ROWS[-1][4] + f"; tmpfs holds {sorted(p.name for p in small.iterdir())}",)
    finally:
        subprocess.run(["umount", str(small)])


def main() -> None:
    ws = Path(tempfile.mkdtemp(prefix="distillery-faults-"))
    try:
        t0 = time.perf_counter()
        setup(ws)
        cases(ws)
        print(f"<!-- bench/fault_table.py, {time.strftime('%Y-%m-%d %H:%M')} UTC, {time.perf_counter() - t0:.0f} s -->")
        print("| case | command | exit | first line of stderr | left behind in the workspace |")
        print("|---|---|---|---|---|")
        for case, cmd, code, first, left in ROWS:
            cell = lambda x: str(x).replace("|", "\\|")  # noqa: E731
            print(f"| {cell(case)} | `{cell(cmd)}` | {code} | {cell(first)} | {cell(left)} |")
    finally:
        shutil.rmtree(ws, ignore_errors=True)


if __name__ == "__main__":
    main()
