"""Issue 55: a text longer than a model's positions has one stated answer wherever a model meets it. A classifier
(teacher, BiLSTM, transformer student, ONNX export) truncates it at max_seq_len, as the model card's usage code
does; general-text rows are packed to seq_len; a seq2seq student refuses prepared text past its positions, at
export and evaluate, in one line naming the limit raised, both numbers and the first sentence past them."""

import pandas as pd
import pytest
import torch

from distillery.errors import DistilleryError
from tests.conftest import make_tiny_teacher
from tests.generation.helpers import make_tok, needs_data, prepared_pairs, tiny_translator

LONG = " ".join(["a gorgeous , witty film"] * 200)  # 1,000 words: far past 128 positions


def test_a_classification_text_past_the_positions_is_truncated_everywhere(tmp_path):
    from distillery.logits.label import run_teacher
    from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent
    from distillery.teacher.train import load_teacher
    from distillery.evaluate.predict import predict_logits

    teacher_dir = make_tiny_teacher(tmp_path / "t", num_labels=2)  # 128 positions
    model, tok, _ = load_teacher(teacher_dir)
    assert model.config.max_position_embeddings == 128 and len(tok(LONG)["input_ids"]) > 1000
    short = tok.decode(tok(LONG, truncation=True, max_length=64, add_special_tokens=False)["input_ids"][:62])
    long_logits = run_teacher(model, tok, [LONG, "fine"], None, 64, batch_tokens=4096, bf16=False)
    cut_logits = run_teacher(model, tok, [short, "fine"], None, 64, batch_tokens=4096, bf16=False)
    torch.testing.assert_close(torch.as_tensor(long_logits), torch.as_tensor(cut_logits), rtol=1e-4, atol=1e-4)
    frame = pd.DataFrame({"text_a": [LONG, "fine"], "text_b": ["", ""]})
    bilstm = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=8, hidden_size=4, mlp_size=4)).eval()
    assert predict_logits(bilstm, tok, frame, 64).shape == (2, 2)


def test_general_text_longer_than_a_row_is_packed_into_rows(tmp_path):
    from distillery.data.corpus import pack

    rows = pack(make_tok(), iter([LONG, "a short one"]), seq_len=32)
    assert rows.shape[1] == 32 and len(rows) > 30  # the long document is cut into rows, never one row past 32


@needs_data
@pytest.mark.parametrize("key,raised", [("max_src_len", 200), ("max_tgt_len", 200)])
def test_a_seq2seq_limit_raised_past_the_students_positions_is_refused_naming_both(tmp_path, key, raised):
    from distillery.generation.data import check_fits
    from distillery.io import read_json, write_json

    tok = make_tok()
    prepared_pairs(tmp_path, tok, n=8)
    limits = read_json(tmp_path / "prepared" / "limits.json")
    check_fits(99, "student s", tmp_path / "prepared", tok, ("dev",))  # built for 96 / 64: fits
    write_json(tmp_path / "prepared" / "limits.json", {**limits, key: raised})
    cap = 98 if key == "max_src_len" else 97
    with pytest.raises(DistilleryError, match=rf"limits\.json: prepare\.{key} = {raised}, but student s has positions "
                                              rf"for \w+ sentences of at most {cap} tokens; prepare with "
                                              rf"prepare\.{key} <= {cap}"):
        check_fits(99, "student s", tmp_path / "prepared", tok, ("dev",))


@needs_data
def test_a_seq2seq_sentence_past_the_positions_is_named_by_file_and_line_at_export(tmp_path):
    """The issue's case: a 113-token German sentence, prepared with the limits raised, meets a student built for
    max_src_len 96. Export refuses before any work, naming the sentence; before, the encoder's position embeddings
    raised `IndexError: index out of range in self`."""
    from distillery.config import ExportConfig
    from distillery.data.table import read_table, write_table
    from distillery.generation.export import export_stage
    from distillery.io import read_json, write_json
    from distillery.students import save_student
    from tests.conftest import conf

    tok = make_tok()
    prepared_pairs(tmp_path, tok, n=8)
    dev = read_table(tmp_path / "prepared" / "dev.tsv", required=("id", "src", "tgt"))
    dev.loc[2, "src"] = " ".join(["Ein Mann mit einem orangefarbenen Hut starrt auf etwas ."] * 12)
    write_table(dev, tmp_path / "prepared" / "dev.tsv")
    limits = read_json(tmp_path / "prepared" / "limits.json")
    write_json(tmp_path / "prepared" / "limits.json", {**limits, "max_src_len": 128, "max_tgt_len": 96})
    student = tiny_translator(tok, max_positions=99)
    save_student(student, tok, tmp_path / "s", {"name": "s"})
    n = len(tok(dev.loc[2, "src"], add_special_tokens=False)["input_ids"])
    with pytest.raises(DistilleryError) as e:
        export_stage(conf(ExportConfig), tmp_path / "s", tmp_path / "prepared", tmp_path / "e")
    assert str(e.value) == (
        f"{tmp_path / 'prepared' / 'limits.json'}: prepare.max_src_len = 128, but student s has positions for source "
        f"sentences of at most 98 tokens; a dev sentence is longer, the first {n} tokens "
        f"({tmp_path / 'prepared' / 'dev.tsv'} row 3, line 3 of the source file); prepare with "
        "prepare.max_src_len <= 98, or train the student on the data prepared with the higher limit")
    assert not (tmp_path / "e").exists()
