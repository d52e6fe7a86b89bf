"""Strided masks (every target position masked once) and the C-MLM teacher's training masks."""


import pytest
import torch

from distillery.generation.masks import strided_masks, training_mask


@pytest.mark.parametrize("n", [1, 2, 6, 7, 8, 15, 40])
def test_strided_masks_cover_each_position_exactly_once(n):
    m = strided_masks(n, max_copies=7)
    assert m.shape == (min(n, 7), n)
    assert (m.sum(axis=0) == 1).all()  # every position masked once
    assert (m.sum(axis=1) >= 1).all()  # no copy wasted


def test_training_mask_targets_only_and_never_empty():
    g = torch.Generator().manual_seed(0)
    target = torch.zeros(64, 10, dtype=torch.bool)
    target[:, 4:8] = True
    eos = torch.zeros(64, 10, dtype=torch.bool)
    eos[:, 8] = True
    m = training_mask(target, eos, mask_prob=0.15, eos_mask_prob=0.15, generator=g)
    assert not (m & ~(target | eos)).any()  # never the source, [CLS] or a separator other than the final one
    assert m.any(dim=1).all()
    assert 0 < int(m[:, 8].sum()) < 64  # the final [SEP] sometimes


# --- validation: one line naming file and line ----------------------------------------------------------------
