"""Parity of the one `Recipe` with the C-MLM loop it replaced (issue 32).

The seq2seq student was trained by its own loop (`generation/train.py`) until the recipe took it over; at the
commit that added the `seq2seq` task this test compared the two and found every weight equal. The former loop
is deleted now; `former_seq2seq_loop` below is its training part, line for line (I/O and logging left out), so
the recipe keeps training what it trained. Warm-up 0: the two schedules differ only in the warm-up's first
step (transformers' starts at lr 0, the recipe's at lr/warm)."""

import math

import numpy as np
import torch

from distillery.data.batching import length_batches
from distillery.logits.artifact import Logits
from distillery.generation.data import decoder_io, encoder_inputs
from distillery.losses.tokens import label_smoothed_nll, topk_kd
from distillery.students import load_student
from distillery.students.seq2seq import Seq2SeqStudent
from distillery.tasks.seq2seq import TeacherTargets
from tests.generation.helpers import make_tok, needs_data, prepared_pairs, student_cfg, tiny_translator, train_translator


def former_seq2seq_loop(model, enc, targets, epochs: int, bs: int = 4, lr: float = 0.003, seed: int = 0):
    """generation/train.py's `train_seq2seq`, as it trained: (1 - alpha) NLL + alpha KD, alpha 0.5, T 10,
    label smoothing 0.1, AdamW (0.9, 0.98), transformers' linear schedule, clipping at 1."""
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lengths = np.array([len(s) + len(t) for s, t in zip(enc.src, enc.tgt)])
    total = int(math.ceil(math.ceil(len(lengths) / bs) * epochs))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.0)
    sched = get_linear_schedule_with_warmup(opt, 0, max(total, 1))
    vocab = (model.final_logits_bias[0] > -5e3).nonzero().squeeze(1)
    table = torch.full((model.config.vocab_size,), -1, dtype=torch.long)
    table[vocab] = torch.arange(len(vocab))
    model.train()
    step = 0
    while step < total:
        for rows in length_batches(lengths, batch_size=bs, rng=rng):
            if step >= total:
                break
            dec_in, labels = decoder_io(enc, rows)
            hidden = model.model(**encoder_inputs(enc, rows), decoder_input_ids=dec_in).last_hidden_state
            logits = hidden @ model.lm_head.weight[vocab].T + model.final_logits_bias[0, vocab]
            labels = torch.where(labels == -100, labels, table[labels.clamp(min=0)])
            values, ids = targets.batch(rows, labels.shape[1])
            nll = label_smoothed_nll(logits, labels, 0.1)
            loss = (1 - 0.5) * nll + 0.5 * topk_kd(logits, values, table[ids], labels, 10.0)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
    return model


@needs_data
def test_seq2seq_student_through_the_recipe_equals_the_former_loop(tmp_path):
    tok = make_tok()
    frame, enc = prepared_pairs(tmp_path, tok)
    vocab = sorted({i for t in enc.tgt for i in t} | {tok.sep_token_id})
    start = tiny_translator(tok, vocab, dropout=0.1, max_positions=99)  # as the task builds it: max(96, 64) + 3
    torch.manual_seed(0)
    reference = former_seq2seq_loop(Seq2SeqStudent.build(start.config), enc,
                                    TeacherTargets(Logits(tmp_path / "art"), frame["id"].tolist(), enc, 2, "s"), epochs=2)
    cfg = student_cfg(losses={"token_nll": 0.5, "topk_kd": 0.5}, epochs=2, model_args={"dropout": 0.1})
    m = train_translator(tmp_path, cfg, "new")
    new, _, _ = load_student(tmp_path / "new")
    ref, got = reference.state_dict(), new.hf.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), (k, (ref[k] - got[k]).abs().max())
    assert m["alpha"] == 0.5 and m["top_k"] == 2 and np.isfinite(m["dev_bleu_greedy"])
