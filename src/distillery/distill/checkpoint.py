"""Resuming a killed training run where it stopped (`distillery distill` on a long general corpus).

Every few minutes (`--checkpoint-minutes`), after an optimizer step, rank 0 writes what the rest of the run
depends on: the weights, the optimizer and schedule, the position (step, epoch, batch), the run's generator as
it was when the step and the epoch began (so the same rows and masks are drawn again), torch's generator
(dropout), the curves so far and the epoch's running loss. A new run of the same student (same params, the same
bytes of data, teacher and logits, and the same number of processes: the key) reads it, skips the batches already done and goes on: the weights it
ends with are those of a run never stopped (tested). The file sits beside the output, `.<name>.resume/state.pt`,
written atomically; it is deleted once the student is saved, and a run with another key ignores and replaces it.
"""

import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from distillery.errors import DistilleryError
from distillery.io import MARKER, file_sha256


def inputs_digest(path, only: str | None = None) -> str | None:
    """SHA-256 over what an input holds (every file's path and bytes; `only`: just the files of that name, e.g. the
    logits' manifests, which carry each shard's checksum and the teacher's fingerprint): a resume notices a
    teacher, logits or data replaced after the kill even where the paths are the same. None where there is no
    such input (`--augmented ''`)."""
    if path is None or str(path) in ("", ".") or not Path(path).exists():
        return None
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file() and p.name != MARKER
                                                and (only is None or p.name == only))
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(root) if p != root else p.name}\0{file_sha256(p)}\0".encode())
    return h.hexdigest()


class Checkpoint:
    def __init__(self, cfg, paths, world_size: int, minutes: float, rank: int = 0) -> None:
        if not (minutes >= 0):
            raise DistilleryError(f"--checkpoint-minutes {minutes}: must be >= 0 (0: no checkpoints)")
        out = Path(paths.out)
        self.dir, self.every, self.rank = out.parent / f".{out.name}.resume", minutes * 60, rank
        self.file = self.dir / "state.pt"
        aug = Path(paths.augmented) / "augmented.tsv" if paths.augmented and str(paths.augmented) != "." else None
        inputs = {"prepared": inputs_digest(paths.prepared), "teacher": inputs_digest(paths.teacher),
                  "logits": inputs_digest(paths.logits, only="manifest.json"), "augmented": inputs_digest(aug)}
        ident = [asdict(cfg), inputs if minutes else {}, world_size]
        self.key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.last = time.monotonic()

    def load(self) -> dict | None:
        """The saved state of this very run (same key), or None."""
        if not self.every or not self.file.is_file():
            return None
        try:
            state = torch.load(self.file, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged file is not fatal: start again from the beginning
            print(f"{self.file}: unreadable; starting from the beginning")
            return None
        if not isinstance(state, dict) or state.get("key") != self.key:
            print(f"warning: {self.file}: saved by a run with other params or inputs (teacher, logits or data "
                  "changed since); starting from the beginning", file=sys.stderr)
            return None
        print(f"resuming from {self.file}: step {state['step'] + 1}, epoch {state['epoch']}, batch {state['batch']}")
        return state

    def due(self) -> bool:
        return bool(self.every) and self.rank == 0 and time.monotonic() - self.last >= self.every

    def save(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".state.{time.time_ns()}.tmp"
        try:
            torch.save({**state, "key": self.key}, tmp)
            tmp.replace(self.file)
        finally:
            tmp.unlink(missing_ok=True)
        self.last = time.monotonic()

    def clear(self) -> None:
        if self.rank == 0:
            self.file.unlink(missing_ok=True)
            for p in self.dir.glob(".state.*.tmp") if self.dir.is_dir() else []:
                p.unlink(missing_ok=True)
            if self.dir.is_dir() and not any(self.dir.iterdir()):
                self.dir.rmdir()
