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


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file next to `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
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


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces `path` as a whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=scratch_prefix(path), suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and (err := disk_error(path, e)) is not None:
            raise err from e
        raise


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
