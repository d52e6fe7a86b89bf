"""The seq2seq student's params: each error names the param."""

import pytest

from distillery.errors import DistilleryError
from tests.generation.helpers import make_tok, needs_data, prepared_pairs, student_cfg, train_translator


def test_student_param_errors_name_the_param():
    from distillery.distill.recipe import student_config
    from tests.generation.helpers import SEQ2SEQ_DEFAULTS

    assert student_cfg(losses={"token_nll": 0.5, "topk_kd": 0.5}).loss_args == {"label_smoothing": 0.1, "top_k": 2}
    with pytest.raises(DistilleryError, match=r"param students.s.loss_args.top_k: must be in 1..1024, got 0"):
        student_cfg(loss_args={"top_k": 0})
    with pytest.raises(DistilleryError, match=r"param students.s.loss_args: must be a block of label_smoothing, top_k"):
        student_cfg(loss_args={"beam": 4})
    with pytest.raises(DistilleryError, match=r"param students.s.betas: must be two numbers in \[0, 1\)"):
        student_cfg(betas=[0.9, 1.5])
    with pytest.raises(DistilleryError, match=r"param students.s.model_args.beam: seq2seq has no such setting"):
        student_config("s", {"model": "seq2seq", "losses": {"token_nll": 1}, "model_args": {"beam": 4}}, SEQ2SEQ_DEFAULTS)


@needs_data
def test_unfit_students_stop_with_one_line_naming_the_param(tmp_path):
    prepared_pairs(tmp_path, make_tok(), n=8)
    with pytest.raises(DistilleryError, match=r"param students.s.model_args: heads 3 must divide d_model 32"):
        train_translator(tmp_path, student_cfg(model_args={"heads": 3}), "a")
    with pytest.raises(DistilleryError, match=r"param students.s.losses.ce: reads one answer per text, and a seq2seq "
                                              r"student answers per token; use token_nll, topk_kd"):
        train_translator(tmp_path, student_cfg(losses={"ce": 1.0}), "b")
    with pytest.raises(DistilleryError, match=r"param students.s.loss_args.top_k: 8, but the soft labels keep 4 per token"):
        train_translator(tmp_path, student_cfg(losses={"topk_kd": 1.0}, loss_args={"top_k": 8}), "c")
    assert not any((tmp_path / n).exists() for n in "abc")
