"""The student's params: each error names the param."""


import pytest

from distillery.errors import DistilleryError


def test_student_param_errors_name_the_param():
    from distillery.generation.config import seq2seq_config

    good = dict(encoder_layers=1, decoder_layers=1, d_model=32, heads=2, ffn_dim=64, dropout=0.0, alpha=0.5,
                temperature=10.0, top_k=2, label_smoothing=0.1, epochs=1, batch_size=4, lr=0.003, warmup_ratio=0.0,
                weight_decay=0.0, grad_clip=1.0, seed=0, output_vocab="target")
    assert seq2seq_config("kd", {}, good).alpha == 0.5
    with pytest.raises(DistilleryError, match=r"param students.kd.heads: must divide d_model 32, got 3"):
        seq2seq_config("kd", {"heads": 3}, good)
    with pytest.raises(DistilleryError, match=r"param students.kd.alpha: must be in \[0, 1\], got 1.5"):
        seq2seq_config("kd", {"alpha": 1.5}, good)
    with pytest.raises(DistilleryError, match=r"param students.kd.beam: unknown setting"):
        seq2seq_config("kd", {"beam": 4}, good)
    with pytest.raises(DistilleryError, match=r"param students \(a student's name\)"):
        seq2seq_config("../x", {}, good)
