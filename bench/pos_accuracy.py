"""Token accuracy of augment's POS tagger against gold tags in a CoNLL-U file.

    python bench/pos_accuracy.py --conllu ../shared/data/ud/en_ewt-ud-dev.conllu [--tagger en_core_web_sm]

Words are the treebank's own tokens (multi-word token ranges and empty nodes are skipped), so the
score is the tagger's, not the tokenizer's. Prints coarse (UPOS, column 4, vs spaCy `pos_`) and fine
(Penn Treebank XPOS, column 5, vs spaCy `tag_`) accuracy; the last line is machine-readable.
"""

import argparse
import time


def read_conllu(path: str) -> list[tuple[list[str], list[str], list[str]]]:
    sents, words, upos, xpos = [], [], [], []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                if words:
                    sents.append((words, upos, xpos))
                words, upos, xpos = [], [], []
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if "-" in cols[0] or "." in cols[0]:
                continue
            words.append(cols[1])
            upos.append(cols[3])
            xpos.append(cols[4])
    if words:
        sents.append((words, upos, xpos))
    return sents


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conllu", required=True)
    ap.add_argument("--tagger", default="en_core_web_sm")
    args = ap.parse_args()
    from distillery.augment.tagger import load_tagger
    from spacy.tokens import Doc

    sents = read_conllu(args.conllu)
    nlp = load_tagger(args.tagger)
    t0 = time.perf_counter()
    docs = list(nlp.pipe((Doc(nlp.vocab, words=w) for w, _, _ in sents), batch_size=512))
    secs = time.perf_counter() - t0
    n = coarse = fine = 0
    for doc, (_, upos, xpos) in zip(docs, sents):
        for tok, u, x in zip(doc, upos, xpos):
            n += 1
            coarse += tok.pos_ == u
            fine += tok.tag_ == x
    print(f"tagger: {args.tagger} ({nlp.meta.get('name')} {nlp.meta.get('version')}), pipes {nlp.pipe_names}")
    print(f"sentences: {len(sents)}, tokens: {n}, tagging speed: {n / secs:,.0f} tokens/s")
    print(f"upos_accuracy={coarse / n:.4f} xpos_accuracy={fine / n:.4f}")


if __name__ == "__main__":
    main()
