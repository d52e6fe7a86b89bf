"""The loss protocol: a registered `Loss` is called as `loss(student_out, teacher_out, batch)`.

A loss declares in `needs` what it reads; the training recipe reads the declarations (and nothing
else) to decide what to ask of the student, whether the stored teacher artifact suffices or the
teacher must run alongside, and whether gold labels are used:

- "labels":  gold labels, `batch["labels"]` (bs,), -100 where a text has none (generated texts);
- "logits":  the teacher's logits (the soft-labels artifact);
- "cls":     the teacher's [CLS] state of some layers (stored by soft-labels, or the teacher alongside);
- "hidden":  every hidden state of both models (the teacher alongside);
- "scores":  every layer's attention scores of both models (the teacher alongside);
- "exits":   the student's early exits (heads `exit1` .. of a FastBERT student; nothing of the teacher);
- "tokens":  per-token logits of the student (a sequence-to-sequence student), labels per target position;
- "topk":    the teacher's stored top-k logits per target token and their token ids (`teacher.ids`).

A loss that owns parameters (TinyBERT's W_e, W_h) creates them in `__init__`; they train with the
student in the step that uses the loss.
"""

from dataclasses import dataclass

import torch
from torch import nn

from distillery.outputs import ModelOutput
from distillery.registry import Registry

NEEDS = ("labels", "logits", "cls", "hidden", "scores", "exits", "tokens", "topk")
TEACHER_ALONGSIDE = frozenset({"hidden", "scores"})  # only a forward pass of the teacher gives these
STUDENT_PARTS = frozenset({"hidden", "scores", "exits", "tokens"})  # what a student family must `provide` for the loss


@dataclass(frozen=True)
class LossContext:
    """What a loss may need to know about the step and the two models when it is built."""

    temperature: float = 1.0
    layer_map: tuple[int, ...] = ()  # teacher layer (1-based) for student layer 1..M
    patient_layers: tuple[int, ...] = ()  # PKD: teacher layers for student layers 1..k-1
    student_width: int = 0
    teacher_width: int = 0
    label_smoothing: float = 0.0  # token_nll: weight of the uniform distribution in the target
    layers: tuple[int, ...] = ()  # layer-map losses: only these student layers (a progressive stage); (): all


class Loss(nn.Module):
    """Base of every registered loss: `forward(student, teacher, batch) -> scalar`."""

    needs: frozenset[str] = frozenset()
    probabilities = False  # reads class probabilities (softmax): refused for a regression task

    def __init__(self, ctx: LossContext) -> None:
        super().__init__()
        self.ctx = ctx

    def forward(self, student: ModelOutput, teacher: ModelOutput, batch: dict) -> torch.Tensor:
        raise NotImplementedError


LOSSES: Registry[type[Loss]] = Registry("loss")
