"""The C-MLM teacher through the one teacher loop (the transformers Trainer): the masking collator, the objective,
a fine-tuning run that learns, and the stage's refusals."""

import numpy as np
import pytest
import torch

from distillery.generation.config import CmlmTeacherConfig
from distillery.generation.data import encode
from tests.generation.helpers import make_tok, multi30k_pairs, needs_data, prepared_pairs, tiny_mlm

CFG = dict(base_model="", epochs=1, batch_size=4, lr=1e-3, weight_decay=0.01, warmup_ratio=0.0, mask_prob=0.15,
           eos_mask_prob=0.15, seed=0, bf16=False, logging_steps=1)


@needs_data
def test_collator_masks_only_target_tokens_and_keeps_dev_masks_fixed(tmp_path):
    from distillery.generation.teacher import MaskingCollator

    tok = make_tok()
    model = tiny_mlm(tok, tmp_path / "t")
    enc = encode(tok, multi30k_pairs(8))
    col = MaskingCollator(model, enc, enc, CmlmTeacherConfig(**CFG))
    rows = [{"row": i} for i in range(8)]
    b = col(rows)
    masked = b["labels"] != -100
    assert masked.any(dim=1).all()  # every pair has at least one masked token
    for r in range(8):
        start = len(enc.src[r]) + 2
        pos = torch.nonzero(masked[r]).flatten()
        assert pos.min() >= start and pos.max() <= start + len(enc.tgt[r])  # target tokens or the final [SEP]
        assert (b["input_ids"][r, pos] == enc.mask).all()
        gold = (enc.tgt[r] + [enc.sep])
        assert b["labels"][r, pos].tolist() == [gold[p - start] for p in pos.tolist()]
    assert not torch.equal(col(rows)["labels"], b["labels"])  # training: drawn anew each batch
    dev = [{"row": i, "dev": True} for i in range(8)]
    assert torch.equal(col(dev)["labels"], col(dev)["labels"])  # dev: the same masks every evaluation


@needs_data
def test_objective_is_cross_entropy_at_masked_positions(tmp_path):
    from distillery.generation.teacher import MaskingCollator
    from distillery.teacher.mlm import MaskedTargets

    tok = make_tok()
    model = tiny_mlm(tok, tmp_path / "t").eval()
    enc = encode(tok, multi30k_pairs(4))
    b = MaskingCollator(model, enc, enc, CmlmTeacherConfig(**CFG))([{"row": i} for i in range(4)])
    out = MaskedTargets(model)(**b)
    full = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                 token_type_ids=b["token_type_ids"]).logits  # every position through BertForMaskedLM
    m = b["labels"] != -100
    ref = torch.nn.functional.cross_entropy(full[m], b["labels"][m])
    torch.testing.assert_close(out["loss"], ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(out["logits"][m], full[m].argmax(-1)) and (out["logits"][~m] == -100).all()


@needs_data
def test_teacher_stage_learns_and_saves_a_masked_lm(tmp_path):
    from distillery.generation.teacher import teacher_stage
    from distillery.teacher.mlm import load_mlm

    tok = make_tok()
    prepared_pairs(tmp_path, tok, n=16)  # prepared/ and a tiny masked LM in teacher/
    cfg = CmlmTeacherConfig(**{**CFG, "base_model": str(tmp_path / "teacher"), "epochs": 20, "lr": 3e-3})
    before = teacher_stage(CmlmTeacherConfig(**{**CFG, "base_model": str(tmp_path / "teacher"), "epochs": 0}),
                           tmp_path / "prepared", tmp_path / "t0", tmp_path / "m0.json", tmp_path / "live0")
    r = teacher_stage(cfg, tmp_path / "prepared", tmp_path / "out", tmp_path / "m.json", tmp_path / "live")
    assert r["steps"] == 80 and r["train_pairs"] == 16 and r["precision"] == "fp32"
    assert r["masked_token_accuracy"] > before["masked_token_accuracy"]  # dev pairs are training pairs here
    assert r["final_loss"] < 0.7 * np.log(len(tok))  # from about log(V), the loss of a uniform guess
    model, _ = load_mlm(str(tmp_path / "out"))
    assert type(model).__name__ == "BertForMaskedLM"
    assert (tmp_path / "live" / "metrics.json").is_file() and not list(tmp_path.glob("out.*"))
    assert [c["epoch"] for c in r["curve"]] == list(range(1, 21))  # val accuracy after every epoch
    assert r["curve"][-1]["masked_token_accuracy"] == r["masked_token_accuracy"]
    # teacher.min_gain: the run stops after the first epoch that gains less (here: any epoch after the first)
    stopped = teacher_stage(CmlmTeacherConfig(**{**CFG, "base_model": str(tmp_path / "teacher"), "epochs": 20,
                                                 "lr": 3e-3, "min_gain": 0.5}),
                            tmp_path / "prepared", tmp_path / "stop", tmp_path / "s.json", tmp_path / "live_s")
    assert [c["epoch"] for c in stopped["curve"]] == [1, 2] and stopped["steps"] == 8


@needs_data
def test_teacher_refuses_pairs_longer_than_its_positions(tmp_path):
    from transformers import BertConfig, BertForMaskedLM

    from distillery.errors import DistilleryError
    from distillery.generation.teacher import teacher_stage

    tok = make_tok()
    prepared_pairs(tmp_path, tok, n=4)
    short = BertForMaskedLM(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=12))
    short.save_pretrained(tmp_path / "short")
    tok.save_pretrained(tmp_path / "short")
    with pytest.raises(DistilleryError, match=r"max_src_len \+ max_tgt_len: a pair of \d+ tokens is longer than the "
                                              r"teacher's 12 positions"):
        teacher_stage(CmlmTeacherConfig(**{**CFG, "base_model": str(tmp_path / "short")}), tmp_path / "prepared",
                      tmp_path / "out", tmp_path / "m.json", tmp_path / "live")
    assert not (tmp_path / "out").exists()


@needs_data
def test_teacher_stage_is_reproducible(tmp_path):
    """The new masked-LM head, the masks, the batch order and dropout all draw from `teacher.seed`: two runs
    save the same weights; another seed does not."""
    from safetensors.torch import load_file

    from distillery.generation.teacher import teacher_stage

    tok = make_tok()
    prepared_pairs(tmp_path, tok, n=8)
    from transformers import BertModel

    BertModel.from_pretrained(tmp_path / "teacher").save_pretrained(tmp_path / "encoder")  # no MLM head: a new one
    tok.save_pretrained(tmp_path / "encoder")

    def run(name, seed):
        cfg = CmlmTeacherConfig(**{**CFG, "base_model": str(tmp_path / "encoder"), "epochs": 2, "seed": seed})
        teacher_stage(cfg, tmp_path / "prepared", tmp_path / name, tmp_path / f"{name}.json", tmp_path / f"{name}-live")
        return load_file(tmp_path / name / "model.safetensors")

    a, b, c = run("a", 0), run("b", 0), run("c", 1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
