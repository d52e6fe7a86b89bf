"""Resuming a killed training run where it stopped (`distillery distill` on a long general corpus).

Every few minutes (`--checkpoint-minutes`), after an optimizer step, rank 0 writes what the rest of the run
depends on: the weights, the optimizer and schedule, the position (step, epoch, batch), the run's generator as
it was when the step and the epoch began (so the same rows and masks are drawn again), torch's generator
(dropout), the curves so far and the epoch's running loss. A new run of the same student (same params, data,
teacher and number of processes: the key) reads it, skips the batches already done and goes on: the weights it
ends with are those of a run never stopped (tested). The file sits beside the output, `.<name>.resume/state.pt`,
written atomically; it is deleted once the student is saved, and a run with another key ignores and replaces it.
"""

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from distillery.errors import DistilleryError


class Checkpoint:
    def __init__(self, cfg, paths, world_size: int, minutes: float, rank: int = 0) -> None:
        if not (minutes >= 0):
            raise DistilleryError(f"--checkpoint-minutes {minutes}: must be >= 0 (0: no checkpoints)")
        out = Path(paths.out)
        self.dir, self.every, self.rank = out.parent / f".{out.name}.resume", minutes * 60, rank
        self.file = self.dir / "state.pt"
        ident = [asdict(cfg), *(str(p) for p in (paths.prepared, paths.teacher, paths.logits, paths.augmented)),
                 world_size]
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
