"""Which target tokens the conditional masked LM sees as [MASK] (Chen et al. 2020, section 3.1).

Training: each target token is masked with probability `mask_prob` (always replaced by [MASK]); the final
[SEP] is masked with probability `eos_mask_prob`, so the model learns where a sentence ends; a pair that
draws no mask gets one at a random target position. Soft labels: a target of n tokens plus its final
[SEP] is repeated in C = min(max_copies, n + 1) copies, copy c masking the positions j with j mod C == c,
so each position is masked exactly once and predicted from the rest of the target (the authors' strided
masks, at most 7 copies).
"""

import numpy as np
import torch


def strided_masks(n_positions: int, max_copies: int) -> np.ndarray:
    """(copies, n_positions) bool: copy c masks positions j with j % copies == c; each column has one True."""
    copies = min(max_copies, n_positions)
    return (np.arange(n_positions)[None, :] % copies) == np.arange(copies)[:, None]


def training_mask(target: torch.Tensor, eos: torch.Tensor, mask_prob: float, eos_mask_prob: float,
                  generator: torch.Generator) -> torch.Tensor:
    """(bs, L) bool of the positions to mask, given `target` (bs, L) bool (the target's tokens, not its final
    [SEP]) and `eos` (bs, L) bool (the final [SEP])."""
    draw = torch.rand(target.shape, generator=generator)
    masked = (draw < mask_prob) & target
    masked |= (torch.rand(target.shape, generator=generator) < eos_mask_prob) & eos
    none = ~masked.any(dim=1)
    if none.any():  # at least one masked token per pair: a random target position
        score = torch.rand(target.shape, generator=generator).masked_fill(~target, -1.0)
        pick = score.argmax(dim=1)
        masked[none, pick[none]] = True
    return masked
