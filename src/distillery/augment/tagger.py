"""POS tagging through spaCy: the rules only ever see spaCy `Doc`s built on whitespace words."""

from collections.abc import Sequence

from distillery.errors import DistilleryError


def load_tagger(name: str):
    """Load an installed spaCy pipeline that has a tagger; keep only what tagging needs."""
    import spacy

    try:
        nlp = spacy.load(name, exclude=["parser", "ner", "lemmatizer", "textcat"])
    except OSError:
        raise DistilleryError(
            f"param augment.tagger: spaCy pipeline {name!r} is not installed; install it or set augment.p_pos to 0"
        ) from None
    if not any(n in nlp.pipe_names for n in ("tagger", "morphologizer")):
        raise DistilleryError(f"param augment.tagger: spaCy pipeline {name!r} has no tagger")
    return nlp


def tag_sentences(nlp, sentences: Sequence[Sequence[str]], batch_size: int = 256) -> list[list[str]]:
    """Tag pre-split sentences; returns one fine-grained tag per given word (tag_, or pos_ if empty)."""
    from spacy.tokens import Doc

    docs = (Doc(nlp.vocab, words=list(ws)) for ws in sentences)
    out = []
    for doc in nlp.pipe(docs, batch_size=batch_size):
        out.append([t.tag_ or t.pos_ for t in doc])
    return out
