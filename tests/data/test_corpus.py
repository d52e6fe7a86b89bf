"""The general-text corpus: WikiExtractor and plain-text readers on the real files, packing, BERT's masking rule."""

import numpy as np
import pytest
import torch

from distillery.data.corpus import mask_rule, pack, read_documents
from distillery.errors import DistilleryError
from tests.conftest import SHARED_DATA

CORPUS = SHARED_DATA / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="needs ../shared/data/corpus")


def tok():
    from transformers import AutoTokenizer

    from distillery.teacher.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))


@needs_corpus
def test_wikiextractor_documents_skip_stubs_and_titles():
    text = (CORPUS / "wikipedia" / "wiki_00").read_text(encoding="utf-8")
    blocks, stubs = text.count("<doc "), 0
    docs = list(read_documents(CORPUS / "wikipedia" / "wiki_00"))
    for block in text.split("<doc ")[1:]:
        body = block.split("</doc>")[0].strip("\n").split("\n")[2:]  # the <doc> line's rest, the title
        stubs += not any(line.strip() for line in body)
    assert len(docs) == blocks - stubs and stubs > 0
    assert docs[0].startswith("Jarred Shaw (born September 28, 1990)")  # the first doc, a stub, skipped; title dropped
    assert all("<doc" not in d and "</doc>" not in d for d in docs)


@needs_corpus
def test_wikitext_headings_skipped_and_joins_undone():
    docs = list(read_documents(CORPUS / "wikitext-2" / "valid.txt"))
    assert docs and not any(d.startswith("=") for d in docs)
    assert not any(" @-@ " in d or " @.@ " in d for d in docs)
    assert "0.7 – 2.2 kg" in " ".join(docs[:3])


def test_pack_rows_and_document_separators():
    t = tok()
    rows = pack(t, iter(["the cat sat on the mat", "a dog ran"]), seq_len=8)
    stream = t(["the cat sat on the mat", "a dog ran"], add_special_tokens=False)["input_ids"]
    flat = stream[0] + [t.sep_token_id] + stream[1] + [t.sep_token_id]
    assert rows.shape == (len(flat) // 6, 8) and rows.dtype == np.int32
    assert (rows[:, 0] == t.cls_token_id).all() and (rows[:, -1] == t.sep_token_id).all()
    assert rows[:, 1:-1].reshape(-1).tolist() == flat[: rows.shape[0] * 6]
    assert len(pack(t, iter(["word " * 400]), seq_len=10, max_tokens=50)) == 50 // 8


def test_empty_corpus_and_unclosed_doc_refused(tmp_path):
    with pytest.raises(DistilleryError, match="fewer than one row"):
        pack(tok(), iter([]), seq_len=16)
    (tmp_path / "wiki_00").write_text('<doc id="1" title="A">\nA\n\nbody text\n', encoding="utf-8")
    with pytest.raises(DistilleryError, match="wiki_00: a <doc> block is not closed"):
        list(read_documents(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistilleryError, match="an empty folder"):
        list(read_documents(tmp_path / "empty"))


def test_masking_rule_proportions_specials_and_seed():
    """15% of the real tokens chosen; of those 80% [MASK], 10% random, 10% unchanged; specials never chosen; the
    draw a function of the seed alone."""
    t = tok()
    rule = mask_rule(t)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, len(t), (2000, 128), generator=g)
    ids[:, 0], ids[:, -1], ids[:, 5] = t.cls_token_id, t.sep_token_id, t.unk_token_id
    out, labels = rule(ids, (0, 7))
    chosen = labels != -100
    real = (~torch.isin(ids, torch.tensor(t.all_special_ids))).sum().item()
    assert abs(chosen.sum().item() / real - 0.15) < 0.005
    assert not chosen[:, [0, 5, -1]].any()
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(out[~chosen], ids[~chosen])
    n = chosen.sum().item()
    masked = (out[chosen] == t.mask_token_id).sum().item() / n
    kept = (out[chosen] == ids[chosen]).sum().item() / n
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(1 - masked - kept - 0.1) < 0.01
    again, _ = rule(ids, (0, 7))
    other, _ = rule(ids, (0, 8))
    assert torch.equal(out, again) and not torch.equal(out, other)
