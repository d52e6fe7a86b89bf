"""Stable example ids: a hash of the text (pair), so the same text has the same id everywhere."""

import hashlib


def text_id(text_a: str, text_b: str = "") -> str:
    """16 hex digits of SHA-1 over the text, or over `text_a<TAB>text_b` for a pair."""
    key = text_a if not text_b else f"{text_a}\t{text_b}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]
