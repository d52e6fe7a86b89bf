"""Where a step's teacher outputs come from: the soft-labels artifact when the losses need only what
it stores (logits, [CLS] states), the teacher run alongside the student when they need more (hidden
states, attention scores). Either way the losses see one `ModelOutput`."""

from pathlib import Path

import numpy as np
import torch

from distillery.errors import DistilleryError
from distillery.logits.arrays import column
from distillery.logits.artifact import Logits
from distillery.logits.fingerprint import teacher_fingerprint
from distillery.losses.base import TEACHER_ALONGSIDE
from distillery.outputs import MAIN, ModelOutput
from distillery.students.transformer import model_output


class TeacherSource:
    """Opens the artifact and loads the teacher only when a step needs them, once for every step."""

    def __init__(self, teacher_dir: str | Path, logits_dir: str | Path, max_seq_len: int, n_labels: int,
                 device: torch.device | None = None) -> None:
        self.teacher_dir, self.logits_dir = Path(teacher_dir), Path(logits_dir)
        self.device = device or torch.device("cpu")
        self.max_seq_len, self.n_labels = max_seq_len, n_labels
        self.store: Logits | None = None
        self.model = None
        self.fingerprint: str | None = None
        self.forward_texts = 0  # texts the teacher ran on alongside the student

    def _artifact(self) -> Logits:
        if self.store is None:
            self.store = Logits(self.logits_dir)
            self.fingerprint = self.store.check_teacher(self.teacher_dir)
        return self.store

    def stored(self, needs: set[str], ids: list[str], what: str, cls_layers: list[int]) -> dict:
        """The stored outputs a step reads, for its transfer set's `ids`, in order."""
        out: dict = {"logits": None, "cls": {}}
        if "logits" in needs:
            logits = torch.as_tensor(self._artifact().get(ids, what=what))
            if logits.shape[1] != self.n_labels:
                raise DistilleryError(f"{self.logits_dir}: logits have {logits.shape[1]} labels, the data {self.n_labels}")
            out["logits"] = logits
        if "cls" in needs and all(column(f"cls@{layer}") in self._artifact().arrays for layer in cls_layers):
            out["cls"] = {layer: torch.as_tensor(self.store.get(ids, what=what, feature=f"cls@{layer}"))
                          for layer in cls_layers}
        return out

    def alongside(self, needs: set[str], stored: dict) -> bool:
        """Whether the teacher must run: hidden states or scores, or [CLS] states the artifact lacks."""
        run = bool(needs & TEACHER_ALONGSIDE) or ("cls" in needs and not stored["cls"])
        if run and self.model is None:
            from transformers import AutoModelForSequenceClassification

            from distillery.teacher.models import load_weights

            self.model = load_weights(AutoModelForSequenceClassification, self.teacher_dir).eval().to(self.device)
            self.fingerprint = self.fingerprint or teacher_fingerprint(self.teacher_dir, self.max_seq_len)
        return run

    def output(self, batch: dict, idx: np.ndarray, stored: dict, needs: set[str], run: bool) -> ModelOutput:
        """The teacher's `ModelOutput` for one batch (rows `idx` of the transfer set)."""
        idx_t = torch.as_tensor(idx)
        if run:
            with torch.no_grad():
                out = model_output(self.model, batch, hidden=True, scores="scores" in needs)
            self.forward_texts += len(idx)
        else:
            out = ModelOutput(mask=batch.get("attention_mask"))
        if stored["logits"] is not None:
            out.logits[MAIN] = stored["logits"][idx_t].to(self.device)
        out.cls = {layer: v[idx_t].to(self.device) for layer, v in stored["cls"].items()}
        return out
