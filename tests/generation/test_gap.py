"""The measure C-MLM's claim rests on (`evaluate/seq2seq.py`): the teacher's masked-token and a student's
teacher-forced next-token top-1 / top-8 on the same dev positions, each against a one-sequence-at-a-time count;
and the teacher stage's stop rule (`PlateauStop`)."""

from types import SimpleNamespace

import numpy as np
import torch

from distillery.generation.data import encode
from distillery.generation.masks import strided_masks
from tests.generation.helpers import make_tok, multi30k_pairs, needs_data, tiny_mlm, tiny_translator


def count(scores: torch.Tensor, gold: list[int], k: int) -> np.ndarray:
    top = scores.topk(k, dim=-1).indices
    return np.array([int((top[:, 0] == torch.tensor(gold)).sum()),
                     sum(int(g in t) for g, t in zip(gold, top.tolist())), len(gold)])


@needs_data
def test_teacher_gap_masks_every_target_position_once_as_the_soft_labels_do(tmp_path):
    from distillery.evaluate.seq2seq import GAP_K, teacher_gap

    tok = make_tok()
    enc = encode(tok, multi30k_pairs(12))
    model = tiny_mlm(tok, tmp_path / "teacher").eval()
    common = np.bincount([i for t in enc.tgt for i in t]).argsort()[::-1][:12]  # a random model scores nothing:
    with torch.no_grad():  # lean its output towards the frequent words (by more than its own spread)
        model.cls.predictions.bias[torch.from_numpy(common.copy())] += torch.linspace(1.0, 0.5, 12)
    model.save_pretrained(tmp_path / "teacher")
    got = teacher_gap(tmp_path / "teacher", enc, 7, bf16=False)
    want = np.zeros(3, dtype=np.int64)
    for s, t in zip(enc.src, enc.tgt):  # one pair, one copy at a time
        ids = torch.tensor([enc.cls, *s, enc.sep, *t, enc.sep])
        seg = torch.tensor([0] * (len(s) + 2) + [1] * (len(t) + 1))
        for copy in strided_masks(len(t) + 1, 7):
            masked = torch.zeros(len(ids), dtype=torch.bool)
            masked[len(s) + 2:] = torch.from_numpy(copy)
            with torch.no_grad():
                logits = model(input_ids=ids.masked_fill(masked, enc.mask)[None], token_type_ids=seg[None]).logits[0]
            want += count(logits[masked], ids[masked].tolist(), GAP_K)
    assert got["positions"] == sum(len(t) + 1 for t in enc.tgt) == want[2]
    assert got["teacher_masked_top1"] == round(want[0] / want[2], 4) > 0
    assert got[f"teacher_masked_top{GAP_K}"] == round(want[1] / want[2], 4) > got["teacher_masked_top1"]


@needs_data
def test_student_gap_is_teacher_forced_next_token_on_the_same_positions():
    from distillery.evaluate.seq2seq import GAP_K, student_gap

    tok = make_tok()
    enc = encode(tok, multi30k_pairs(12))
    model = tiny_translator(tok).hf.eval()
    got = student_gap(model, enc)
    want = np.zeros(3, dtype=np.int64)
    for s, t in zip(enc.src, enc.tgt):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[*s, enc.sep]]), decoder_input_ids=torch.tensor([[enc.cls, *t]])).logits[0]
        want += count(logits, [*t, enc.sep], GAP_K)
    assert got["positions"] == want[2] == sum(len(t) + 1 for t in enc.tgt)
    assert (got["student_forced_top1"], got[f"student_forced_top{GAP_K}"]) == (round(want[0] / want[2], 4),
                                                                              round(want[1] / want[2], 4))


def test_plateau_stop_ends_training_after_the_first_epoch_that_gains_less_than_min_gain():
    from distillery.teacher.train import PlateauStop

    stop, control = PlateauStop("acc", 0.01), SimpleNamespace(should_training_stop=False)
    for score, stops in ((0.40, False), (0.45, False), (0.4605, False), (0.465, True)):
        control.should_training_stop = False
        stop.on_evaluate(None, None, control, metrics={"eval_acc": score})
        assert control.should_training_stop is stops, score
    # a fall counts as no gain: measured against the best so far
    stop, control = PlateauStop("acc", 0.01), SimpleNamespace(should_training_stop=False)
    for score in (0.5, 0.48):
        stop.on_evaluate(None, None, control, metrics={"eval_acc": score})
    assert control.should_training_stop
