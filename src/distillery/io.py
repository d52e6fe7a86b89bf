"""Atomic file and folder writes, scratch space that a killed run does not leave behind, and small
JSON helpers.

Every stage writes to a temporary sibling and renames it into place, so a killed or failing stage
never leaves a half-written output behind. Scratch names carry the writer's process id
(`.<name>.<pid>.<random>.tmp`); the next write beside them removes those whose process is gone, so
a SIGKILL leaves nothing behind for long, while a concurrent writer's scratch is left alone.
"""

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distillery.errors import DistilleryError

# A write that fails for lack of room or rights is the user's to fix: say which path.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(folder: Path, name: str | None = None) -> None:
    """Remove scratch (`.<name>.<pid>.*.tmp`, `.<name>.old`) left in `folder` by dead processes;
    with `name` None, every such scratch in the folder."""
    if not folder.is_dir():
        return
    for p in folder.glob(f".{name or '*'}.*"):
        parts = p.name.split(".")
        stale = p.name.endswith(".old") and (name is None or p.name == f".{name}.old")
        if p.name.endswith(".tmp") and len(parts) >= 4 and parts[-3].isdigit():
            stale = int(parts[-3]) != os.getpid() and not _alive(int(parts[-3]))
        if stale:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def scratch_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def disk_error(path: Path, e: OSError) -> DistilleryError | None:
    if e.errno in _DISK_ERRORS:
        return DistilleryError(f"{path}: cannot write ({e.strerror}); free some space or choose another folder, "
                               "then run again (nothing was half-written)")
    return None


def check_file_target(path: str | Path, param: str = "") -> Path:
    """Refuse a file output whose path is a folder (or below a file), before any work."""
    path = Path(path)
    where = f"{param} {path}" if param else str(path)
    if path.is_dir():
        raise DistilleryError(f"{where}: is a folder; give a file name (e.g. {path / 'metrics.json'})")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise DistilleryError(f"{where}: {parent} is a file, not a folder; choose another path")
    return path


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    check_file_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=scratch_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and (err := disk_error(path, e)) is not None:
            raise err from e
        raise


MARKER = ".distillery-output"  # written into every output folder: which stage made it, and what it holds


def _marker(path: Path) -> dict | None:
    try:
        m = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and isinstance(m.get("stage"), str) and isinstance(m.get("files"), list) else None


def _tree(path: Path) -> list[str]:
    """Every file below `path` (links not followed), as sorted paths relative to it; the marker aside."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir() and p.name != MARKER)


# What DVCLive itself writes into a live folder: such a folder made before the marker existed is still ours.
LEGACY = {"live": {"plots", "metrics.json", "report.html", "report.md", "static"}}


def _not_dvclive(path: Path) -> list[str]:
    """Files below a live folder that DVCLive does not write (it writes metrics.json, report.*, static/ and, under
    plots/, metrics/**.tsv, images/, sklearn/ and custom/): a user's figure or notes put among the curves."""
    ours = {"metrics.json", "report.html", "report.md", "params.yaml"}
    plots = {"metrics": (".tsv",), "images": (".png", ".jpg", ".jpeg", ".svg", ".gif"), "sklearn": (".json",),
             "custom": (".json",)}
    odd = []
    for rel in _tree(path):
        parts = Path(rel).parts
        fine = (rel in ours or parts[0] == "static"
                or (len(parts) >= 3 and parts[0] == "plots" and parts[1] in plots
                    and rel.lower().endswith(plots[parts[1]])))
        if not fine:
            odd.append(rel)
    return odd


def output_path(path: str | Path) -> Path:
    """An output folder named through a link to a folder is the folder it points to (the link stays a link)."""
    path = Path(path)
    return path.resolve() if path.is_symlink() and path.resolve().is_dir() else path


def claim_output(path: str | Path, kind: str, param: str = "--out") -> Path:
    """Refuse, before any work, to write the output of `kind` to `path` unless `path` is absent, an empty
    folder, or a previous output of the same stage with nothing added to it, at any depth (its marker lists every
    file). Anything else (a project folder, `.`, a folder of notes, another stage's output, a file) is the user's:
    one line naming it, and nothing touched. A link to a folder is followed. Returns `path`."""
    path = Path(path)
    where = f"{param} {path}" if param else str(path)
    if path.is_symlink() and not path.resolve().is_dir():
        raise DistilleryError(f"{where}: is a link to {os.readlink(path)}, not to a folder; choose another folder "
                              f"for the {kind} output")
    real = output_path(path)
    if real.exists() and not real.is_dir():
        raise DistilleryError(f"{where}: exists and is not a folder; choose another folder for the {kind} output")
    here = Path.cwd().resolve()
    if real.resolve() in (here, *here.parents) or real.resolve().parent == real.resolve():
        raise DistilleryError(f"{where}: is the working folder or one above it; nothing was changed: choose another "
                              f"folder, one of its own, for the {kind} output")
    if not real.exists():
        return path
    entries = sorted(p.name for p in real.iterdir())
    if not entries:
        return path
    mark = _marker(real)
    if mark is None and set(entries) <= LEGACY.get(kind, set()):
        mark = {"stage": kind, "files": entries}
    if mark is None:
        raise DistilleryError(
            f"{where}: folder exists and is not an output of distillery {kind} (it holds {_few(entries)}); "
            "nothing was changed: choose another folder, or empty this one yourself")
    if mark["stage"] != kind:
        raise DistilleryError(f"{where}: holds the output of distillery {mark['stage']}, not {kind}; "
                              "nothing was changed: choose another folder")
    added = [e for e in entries if e not in mark["files"] and e != MARKER]
    if not added and isinstance(mark.get("tree"), list):  # a file added inside a sub-folder (plots/fig1.svg)
        added = [f for f in _tree(real) if f not in set(mark["tree"])]
    if not added and kind == "live":  # made before markers listed every file: DVCLive's own layout
        added = _not_dvclive(real)
    if added:
        raise DistilleryError(f"{where}: holds files distillery {kind} did not write ({_few(added)}); nothing was "
                              "changed: move them away or choose another folder")
    return path


def _write_marker(folder: Path, kind: str) -> None:
    (folder / MARKER).write_text(json.dumps({"stage": kind, "files": sorted(p.name for p in folder.iterdir()),
                                             "tree": _tree(folder)}) + "\n", encoding="utf-8")


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _is_disk_full(e: BaseException, path: Path) -> bool:
    """Libraries that write through their own code (safetensors, torch.save) report a full disk as their
    own error type: recognise it by the operating system's message, or by torch's zip writer failing while
    the disk that holds `path` has (almost) no room left."""
    text = str(e)
    if any(s in text for s in ("os error 28", "No space left", "Disk quota exceeded", "os error 122",
                               "file write failed", "Read-only file system", "os error 30")):
        return True
    if "inline_container.cc" in text or "PytorchStreamWriter" in text:
        try:
            return shutil.disk_usage(path.parent).free < 64 * 2**20
        except OSError:
            return False
    return False


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str, param: str = "--out") -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `path` as a whole, with a marker naming
    `kind` (the stage) and the entries it holds. `path` must be claimable (`claim_output`): it is
    checked before the work and again just before the replace."""
    claim_output(path, kind, param)
    named, path = Path(path), output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=scratch_prefix(path), suffix=".tmp"))
    try:
        yield tmp
        _write_marker(tmp, kind)
        os.chmod(tmp, 0o755)
        claim_output(named, kind, param)
        _replace_dir(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and (err := disk_error(path, e)) is not None:
            raise err from e
        if not isinstance(e, (OSError, DistilleryError, KeyboardInterrupt)) and _is_disk_full(e, path):
            raise DistilleryError(f"{path}: cannot write (no space left on the device); free some space or choose "
                                  "another folder, then run again (nothing was half-written)") from None
        raise


def _replace_dir(tmp: Path, path: Path) -> None:
    """Put the finished folder `tmp` where `path` is: two renames, never a copy."""
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def staged_live(live_dir: str | Path) -> Iterator[tuple[Path, Any]]:
    """A DVCLive folder that changes together with the model it describes: the curves are written to a
    scratch folder beside `live_dir`, and `publish()` (called once the model is saved) puts them in place.
    A run that fails or is killed before that leaves the previous curves as they were, and two concurrent
    runs never write into one folder. Yields (scratch folder, publish)."""
    claim_output(live_dir, "live", "--live-dir")
    named, live_dir = Path(live_dir), output_path(live_dir)
    with scratch_dir(live_dir, "live") as scratch:
        done = []

        def publish() -> None:
            if done:
                return
            _write_marker(scratch, "live")
            claim_output(named, "live", "--live-dir")
            _replace_dir(scratch, live_dir)
            done.append(True)

        yield scratch, publish


@contextlib.contextmanager
def scratch_dir(beside: str | Path, what: str) -> Iterator[Path]:
    """A scratch folder next to `beside` (on the same disk as the output, never in /tmp), removed
    afterwards, and by the next run if this process is killed."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    name = f"{beside.name}-{what}"
    clean_stale(beside.parent, name)
    tmp = Path(tempfile.mkdtemp(dir=beside.parent, prefix=f".{name}.{os.getpid()}.", suffix=".tmp"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


STAGE_KEY = "written_by"  # in every metrics JSON: "distillery <stage>", what lets a re-run replace it


def _locked_by(path: Path) -> str | None:
    """The distillery command that DVC's lock file (in the working folder) records as writing `path`: a metrics
    file made before metrics carried `written_by` is still that stage's."""
    import yaml

    try:
        lock = yaml.safe_load(Path("dvc.lock").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    for stage in (lock or {}).get("stages", {}).values() if isinstance(lock, dict) else ():
        cmd = stage.get("cmd") if isinstance(stage, dict) else None
        cmd = " ".join(cmd) if isinstance(cmd, list) else str(cmd or "")
        words = cmd.split()
        outs = [o.get("path") for o in stage.get("outs") or [] if isinstance(o, dict)]
        if any(isinstance(o, str) and Path(o).resolve() == path.resolve() for o in outs):
            for i, w in enumerate(words[:-1]):
                if w in ("distillery", "stages.cli"):
                    return "ensemble" if words[i + 1] == "soft-labels" and "--ensemble-of" in words else words[i + 1]
    return None


def claim_metrics(path: str | Path, kind: str, param: str = "--metrics") -> Path:
    """Refuse, before any work, to write the metrics of `kind` over a file that is not a previous metrics file of
    that stage (`written_by`, or DVC's lock naming the stage): params.yaml, a data file or a user's notes stay as
    they are. A folder, or a path below a file, is refused too."""
    path = check_file_target(path, param)
    if not path.exists() and not path.is_symlink():
        return path
    where = f"{param} {path}" if param else str(path)
    if not path.is_file():
        raise DistilleryError(f"{where}: exists and is not a regular file; choose another path for the {kind} metrics")
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.stat().st_size < 2**24 else None
    except (OSError, ValueError):
        data = None
    by = data.get(STAGE_KEY) if isinstance(data, dict) else None
    if by is None and isinstance(data, dict) and (locked := _locked_by(path)):
        by = f"distillery {locked}"
    if by == f"distillery {kind}":
        return path
    what = f"the metrics of {by}" if isinstance(by, str) and by.startswith("distillery ") else \
        "not a metrics file that distillery wrote"
    raise DistilleryError(f"{where}: exists and is {what}, not of distillery {kind}; nothing was changed: choose "
                          "another path for the metrics (or delete the file yourself)")


def write_metrics(path: str | Path, metrics: dict, kind: str, written: str | Path | None = None) -> None:
    """A stage's metrics JSON, marked `written_by: distillery <kind>` and written atomically over nothing but a
    previous metrics file of the same stage. `written`: the output this stage has already put in place, named
    if the metrics cannot be written (a full disk), so the message says what is there and what is not."""
    claim_metrics(path, kind)
    try:
        write_json(path, {**metrics, STAGE_KEY: f"distillery {kind}"})
    except DistilleryError as e:
        if written is None or "cannot write" not in str(e):
            raise
        raise DistilleryError(str(e).replace("(nothing was half-written)", f"({written} is written and complete; "
                                             f"only its metrics {path} are not)")) from None


def read_utf8(path: str | Path) -> str:
    """A text file's content (UTF-8, a byte-order mark dropped); an invalid byte is one line naming the file, the
    line and the byte."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DistilleryError(f"{path}:{line}: byte {e.start} (0x{raw[e.start]:02x}) is not valid UTF-8; "
                              "save the file as UTF-8") from None


def file_sha256(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
        fh.write("\n")


def read_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DistilleryError(f"{path}: not valid JSON ({e}); re-run the stage that writes it") from None
