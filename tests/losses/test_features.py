"""Golden values for the intermediate-layer losses, worked out by hand on tiny tensors."""

import math

import pytest
import torch
from torch import nn

from distillery.losses import LOSSES, LossContext
from distillery.losses.features import attention_kl, attention_mse, cosine_hidden, hidden_mse, patient_loss
from distillery.outputs import ModelOutput as Out


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_registered_with_what_they_read():
    for name, needs in [("cosine_hidden", {"hidden"}), ("pkd", {"cls"}), ("tinybert_embedding", {"hidden"}),
                        ("tinybert_hidden", {"hidden"}), ("tinybert_attention", {"scores"}),
                        ("mobilebert_feature_map", {"hidden"}), ("mobilebert_attention", {"scores"})]:
        cls = LOSSES.get(name)
        assert cls.needs == needs and cls.__doc__


def test_cosine_hidden_golden_ignores_padding():
    s = t([[[1, 0], [0, 1], [5, 5]]])  # token 3 is padding
    tt = t([[[1, 0], [1, 0], [-1, 0]]])
    mask = torch.tensor([[1, 1, 0]])
    # cos = 1 and 0 on the real tokens: mean(1 - cos) = (0 + 1) / 2
    assert cosine_hidden(s, tt, mask).item() == pytest.approx(0.5)


def test_patient_loss_golden():
    # layer 1: row 1 s=(3,4)->(.6,.8), t=(1,0): squared diffs .16, .64 -> mean .4
    #          row 2 s=(1,0), t=(0,1): 1, 1 -> mean 1;  batch mean of element means: (.4 + 1) / 2 = .7
    # layer 2: s=(0,2), t=(0,5) normalise to the same vector: 0
    s = [t([[3, 4], [1, 0]]), t([[0, 2], [0, 2]])]
    tt = [t([[1, 0], [0, 1]]), t([[0, 5], [0, 5]])]
    assert patient_loss(s, tt).item() == pytest.approx(0.7)


def test_attention_mse_golden_unnormalised_and_masked():
    s = t([[[[1, 2], [3, 4]]]])  # (bs 1, H 1, L 2, L 2)
    tt = t([[[[0, 9], [9, 9]]]])
    # both tokens real: (1 + 49 + 36 + 25) / 4
    assert attention_mse(s, tt, torch.tensor([[1, 1]])).item() == pytest.approx(27.75)
    # token 2 padding: only the (1, 1) score counts
    assert attention_mse(s, tt, torch.tensor([[1, 0]])).item() == pytest.approx(1.0)


def test_hidden_mse_golden_through_projection():
    s = t([[[1], [2]]])  # (1, 2, d_s=1)
    proj = nn.Linear(1, 2)
    with torch.no_grad():
        proj.weight.copy_(t([[2], [0]]))
        proj.bias.copy_(t([0, 1]))
    tt = t([[[1, 1], [0, 0]]])
    # token 1 only: proj(1) = (2, 1) vs (1, 1): (1 + 0) / 2
    assert hidden_mse(s, tt, torch.tensor([[1, 0]]), proj).item() == pytest.approx(0.5)
    # no projection, same width: plain MSE over real tokens
    assert hidden_mse(t([[[1, 3]]]), t([[[0, 0]]]), torch.tensor([[1]])).item() == pytest.approx(5.0)


def test_attention_kl_golden_masks_pad_keys_and_queries():
    s = torch.zeros(1, 1, 3, 3)  # uniform over the two real keys
    tt = t([[[[math.log(3), 0, 100], [0, 0, 100], [7, 7, 7]]]])  # key 3 is padding: its 100 must not count
    mask = torch.tensor([[1, 1, 0]])
    # query 1: KL((.75,.25) || (.5,.5)) = .75 ln 1.5 + .25 ln .5 ; query 2: 0 ; query 3 is padding
    want = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2
    assert attention_kl(s, tt, mask).item() == pytest.approx(want, rel=1e-5)


def test_attention_kl_averages_teacher_head_groups():
    s = torch.zeros(1, 1, 2, 2)  # one student head, uniform
    tt = torch.stack([t([[math.log(3), 0], [math.log(3), 0]]), t([[0, math.log(3)], [0, math.log(3)]])])[None]
    # teacher heads (.75,.25) and (.25,.75) average to uniform: KL 0
    assert attention_kl(s, tt, torch.tensor([[1, 1]])).item() == pytest.approx(0.0, abs=1e-7)


def test_registered_losses_follow_the_layer_maps():
    mask = torch.tensor([[1, 1]])
    h = [torch.zeros(1, 2, 2) + i for i in range(3)]  # student: embeddings, layer 1, layer 2 (value = index)
    th = [torch.zeros(1, 2, 2) + 10 * i for i in range(5)]  # teacher: 4 layers (value = 10 x index)
    sf, tf = Out(hidden=h, mask=mask), Out(hidden=th, mask=mask)
    ctx = LossContext(layer_map=(2, 4), student_width=2, teacher_width=2)

    def loss(name, s, t_, c=ctx):
        return LOSSES.get(name)(c)(s, t_, {}).item()

    # student layer 1 vs teacher 2: (1 - 20)^2 ; layer 2 vs teacher 4: (2 - 40)^2
    assert loss("mobilebert_feature_map", sf, tf) == pytest.approx(19 ** 2 + 38 ** 2)
    assert loss("tinybert_hidden", sf, tf) == pytest.approx(19 ** 2 + 38 ** 2)  # same width: no W_h
    assert loss("tinybert_embedding", sf, tf) == pytest.approx(0.0)
    # PKD: student layer 1's [CLS] against the teacher's stored [CLS] of its patient layer
    sf.hidden[1] = t([[[3, 4], [9, 9]]])
    tf.cls = {3: t([[1, 0]])}
    assert loss("pkd", sf, tf, LossContext(layer_map=(2, 4), patient_layers=(3,))) == pytest.approx(0.4)
    # attention losses pair student layer m with teacher layer layer_map[m - 1]
    ss = [torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)]
    ts = [torch.full((1, 1, 2, 2), float(i)) for i in range(4)]
    got = loss("tinybert_attention", Out(scores=ss, mask=mask), Out(scores=ts, mask=mask))
    assert got == pytest.approx((0 - 1) ** 2 + (1 - 3) ** 2)


def test_tinybert_losses_own_their_width_maps():
    """W_e and W_h belong to the losses (trained with the student); none when the widths match."""
    narrow = LossContext(layer_map=(2,), student_width=16, teacher_width=32)
    emb, hid = LOSSES.get("tinybert_embedding")(narrow), LOSSES.get("tinybert_hidden")(narrow)
    assert emb.proj.weight.shape == (32, 16) and hid.proj.weight.shape == (32, 16)
    assert emb.proj is not hid.proj
    assert list(LOSSES.get("tinybert_hidden")(LossContext(student_width=32, teacher_width=32)).parameters()) == []
    with pytest.raises(ValueError, match="no patient layers"):
        LOSSES.get("pkd")(LossContext())
