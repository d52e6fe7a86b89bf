import pytest
import torch

from distillery.students import STUDENTS
from distillery.students.bilstm import BiLSTMConfig, BiLSTMStudent, _reverse_within_length


def _tok():
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))


def test_registered():
    assert STUDENTS.get("bilstm") is BiLSTMStudent


def test_reverse_within_length_leaves_pads():
    x = torch.arange(8.0).view(2, 4, 1)
    out = _reverse_within_length(x, torch.tensor([3, 4]))
    assert out[:, :, 0].tolist() == [[2, 1, 0, 3], [7, 6, 5, 4]]


def test_shapes_single_and_padding_invariance():
    tok = _tok()
    m = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=32, hidden_size=16, mlp_size=8)).eval()
    texts = ["a gorgeous , witty film", "dull", "it 's a bit long but mostly fun to watch"]
    batch = m.collate(tok, texts, None, 64)
    assert batch["input_ids"].shape[0] == 3 and batch["lengths"].tolist()[1] == 1
    logits = m(**batch).main
    assert logits.shape == (3, 2)  # (bs, num_labels)
    one = m(**m.collate(tok, [texts[1]], None, 64)).main
    torch.testing.assert_close(one[0], logits[1], atol=1e-6, rtol=1e-5)  # pads never leak into a short row


def test_pair_shapes():
    tok = _tok()
    m = BiLSTMStudent(BiLSTMConfig(vocab_size=len(tok), embed_dim=32, hidden_size=16, mlp_size=8, pair=True, num_labels=3))
    batch = m.collate(tok, ["a man sleeps", "two dogs run"], ["someone rests", "animals move fast"], 64)
    assert set(batch) == {"input_ids", "lengths", "input_ids_b", "lengths_b"}
    assert m(**batch).main.shape == (2, 3)


def test_from_teacher_copies_embeddings_and_refuses_misfit(tiny_base):
    from transformers import AutoModel

    emb = AutoModel.from_pretrained(tiny_base).get_input_embeddings().weight
    m = BiLSTMStudent.from_teacher(BiLSTMConfig(vocab_size=emb.shape[0], embed_dim=32, freeze_embeddings=True), tiny_base)
    torch.testing.assert_close(m.embed.weight, emb)
    assert not m.embed.weight.requires_grad
    with pytest.raises(ValueError, match="embed_dim=48.*set model_args.embed_dim to 32"):
        BiLSTMStudent.from_teacher(BiLSTMConfig(vocab_size=emb.shape[0], embed_dim=48), tiny_base)
