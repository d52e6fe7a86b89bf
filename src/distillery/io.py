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


# What DVCLive itself writes into a live folder: such a folder made before the marker existed is still ours.
LEGACY = {"live": {"plots", "metrics.json", "report.html", "report.md", "static"}}


def claim_output(path: str | Path, kind: str, param: str = "--out") -> Path:
    """Refuse, before any work, to write the output of `kind` to `path` unless `path` is absent, an empty
    folder, or a previous output of the same stage with nothing added to it (its marker lists every entry).
    Anything else (a project folder, `.`, a folder of notes, another stage's output, a file) is the user's:
    one line naming it, and nothing touched. Returns `path`."""
    path = Path(path)
    where = f"{param} {path}" if param else str(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise DistilleryError(f"{where}: exists and is not a folder; choose another folder for the {kind} output")
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents) or path.resolve().parent == path.resolve():
        raise DistilleryError(f"{where}: is the working folder or one above it; nothing was changed: choose another "
                              f"folder, one of its own, for the {kind} output")
    if not path.exists():
        return path
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return path
    mark = _marker(path)
    if mark is None and set(entries) <= LEGACY.get(kind, set()):
        return path
    if mark is None:
        raise DistilleryError(
            f"{where}: folder exists and is not an output of distillery {kind} (it holds {_few(entries)}); "
            "nothing was changed: choose another folder, or empty this one yourself")
    if mark["stage"] != kind:
        raise DistilleryError(f"{where}: holds the output of distillery {mark['stage']}, not {kind}; "
                              "nothing was changed: choose another folder")
    added = [e for e in entries if e not in mark["files"] and e != MARKER]
    if added:
        raise DistilleryError(f"{where}: holds files distillery {kind} did not write ({_few(added)}); nothing was "
                              "changed: move them away or choose another folder")
    return path


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
    path = Path(path)
    claim_output(path, kind, param)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=scratch_prefix(path), suffix=".tmp"))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"stage": kind, "files": sorted(p.name for p in tmp.iterdir())}) + "\n",
                                  encoding="utf-8")
        os.chmod(tmp, 0o755)
        claim_output(path, kind, param)
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
    live_dir = Path(live_dir)
    claim_output(live_dir, "live", "--live-dir")
    with scratch_dir(live_dir, "live") as scratch:
        done = []

        def publish() -> None:
            if done:
                return
            (scratch / MARKER).write_text(json.dumps({"stage": "live", "files": sorted(
                p.name for p in scratch.iterdir())}) + "\n", encoding="utf-8")
            claim_output(live_dir, "live", "--live-dir")
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
