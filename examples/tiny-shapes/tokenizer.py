"""A CLIP byte-level BPE tokenizer whose vocabulary is a given word list (each word one token)."""

from __future__ import annotations

import string
from collections.abc import Iterable

# Pieces any text can fall back to: every printable ASCII character, alone and word-final.
_CHARS = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))


def word_vocab(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json and merges.txt contents so that each word (lower case) encodes as one token."""
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    merges: list[tuple[str, str]] = []

    def add(token: str) -> None:
        if token not in vocab:
            vocab[token] = len(vocab)

    for ch in _CHARS:
        add(ch)
        add(ch + "</w>")
    for word in sorted({w.lower() for w in words}):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        for ch in pieces:
            add(ch)
        current = pieces[0]
        for nxt in pieces[1:]:
            merge = (current, nxt)
            if merge not in merges:
                merges.append(merge)
            current += nxt
            add(current)
    return vocab, merges


def build_tokenizer(words: Iterable[str]):  # -> transformers.CLIPTokenizer (imported lazily)
    """A transformers CLIPTokenizer over `words`."""
    from transformers import CLIPTokenizer

    vocab, merges = word_vocab(words)
    return CLIPTokenizer(vocab=vocab, merges=merges)
