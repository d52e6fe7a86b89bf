"""The one answer every model gives: teacher, students of every family, exits, task heads, decoders.

A model fills what it has; a loss declares what it reads (`Loss.needs`), and the training recipe asks
each model, or the stored teacher artifact, for exactly that. Shapes: bs = batch, L = tokens,
d = width, H = heads. Layer lists are indexed like transformers' `hidden_states`: 0 is the embedding
output, l >= 1 the output of layer l.
"""

from dataclasses import dataclass, field

import torch

MAIN = "main"  # the head of a single-task classifier


@dataclass
class ModelOutput:
    logits: dict[str, torch.Tensor] = field(default_factory=dict)  # head -> (bs, n_labels), or (bs, L, vocab) per token
    hidden: list[torch.Tensor] | None = None  # [layer] -> (bs, L, d); 0 = embeddings
    scores: list[torch.Tensor] | None = None  # [layer - 1] -> (bs, H, L, L): q.k / sqrt(d_head), before mask and softmax
    cls: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (bs, d): the [CLS] state (stored by soft-labels)
    mask: torch.Tensor | None = None  # (bs, L): 1 for real tokens, 0 for padding
    ids: torch.Tensor | None = None  # (bs, L, k): token ids of per-token logits stored as a top-k (a teacher's)

    @property
    def main(self) -> torch.Tensor:
        """The logits of the single head (`MAIN`) of a one-task classifier."""
        return self.logits[MAIN]

    def cls_state(self, layer: int) -> torch.Tensor:
        """[CLS] of `layer`: stored, or read from the hidden states of a model run alongside."""
        if layer in self.cls:
            return self.cls[layer]
        return self.hidden[layer][:, 0]  # (bs, d)
