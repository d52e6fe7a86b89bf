"""Run the root pipeline (`dvc.yaml`, every stage as in the default run) on the root `params.yaml` with the sections
of one of these files put in its place (`prepare`: the data; `students`: the ones to train), in a scratch copy of
the repository, and keep its results here: `<name>/metrics/` (every stage's metrics and the evaluate table) and
`<name>/times.json` (each stage's wall time, from the commands' own `[... took]` lines).

    python studies/own-data/run.py studies/own-data/emotion.yaml      # Emotion, 6 labels
    python studies/own-data/run.py studies/own-data/trec.yaml         # TREC, 50 fine labels
    python studies/own-data/run.py studies/own-data/stsb.yaml         # STS-B, a regression

Paths in them are relative to the repository root; the scratch copy sits beside the repository, so they resolve
the same there and the tables keep them as written. The log grows in `<name>.log` (git-ignored) as the run goes.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(params: Path) -> None:
    import yaml

    params = params.resolve()
    name = params.stem
    own = yaml.safe_load(params.read_text(encoding="utf-8"))
    doc = {**yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8")), **own}  # its sections replace the root's
    work = Path(tempfile.mkdtemp(prefix=f"distillery-{name}-", dir=REPO.parent))  # beside the repo: ../shared resolves
    try:
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout.split()
        for f in files:
            if f.startswith(("metrics/", "dvclive/", "dvc.lock", "studies/")) or not (REPO / f).is_file():
                continue
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, work / f)
        for block in (doc.get("students") or {}).values():  # a general student (studies/general) stays where it is
            start = (block.get("model_args") or {}).get("init_from")
            if start and not Path(start).is_absolute():
                block["model_args"]["init_from"] = str((REPO / start).resolve())
        (work / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=run", "-c", "user.email=run@distillery.invalid", "commit", "-qm", name]):
            subprocess.run(cmd, cwd=work, check=True)
        t0 = time.perf_counter()
        log_path = params.parent / f"{name}.log"  # git-ignored
        with open(log_path, "w", encoding="utf-8") as out_log:
            r = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=work, stdout=out_log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        log = log_path.read_text(encoding="utf-8", errors="replace")
        if r.returncode != 0:
            sys.exit(f"dvc repro failed (log: {params.parent / name}.log)")
        stages = re.findall(r"Running stage '([^']+)'", log)
        took = [float(x) for x in re.findall(r"\[[a-z-]+ took ([0-9.]+) s\]", log)]
        out = params.parent / name
        shutil.rmtree(out / "metrics", ignore_errors=True)
        shutil.copytree(work / "metrics", out / "metrics")
        times = {"stages": dict(zip(stages, took)), "sum_of_stage_times_min": round(sum(took) / 60, 1),
                 "wall_min": round(wall / 60, 1)}
        (out / "times.json").write_text(json.dumps(times, indent=2) + "\n", encoding="utf-8")
        print((out / "metrics/eval/table.md").read_text(encoding="utf-8"))
        print(json.dumps(times, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
