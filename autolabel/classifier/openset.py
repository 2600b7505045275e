"""The `other` label without examples: negative concepts mined from the model's own vocabulary (NegLabel-style).

Jiang et al. ("Negative Label Guided OOD Detection with Pretrained Vision-Language Models", ICLR 2024) add
many "negative" concepts, far from the classes in the text space, beside the classes: an image that
resembles a negative concept more than any class is out of set. We take the candidates from the model's
own tokenizer vocabulary (every checkpoint has one, offline, and it holds only words the text tower was
trained on), put each through the spec's first template, and keep a candidate only if

1. it is not a near-synonym of a class: it is farther from every class than that class is from its
   nearest other class (so "crimson" never competes with "red circle" when "red square" is a class), and
2. it is not a word that describes any picture ("photo", "shape", "blurry"): its similarity to the spec's
   templates with an empty label is nearer that of the empty label itself (1) than that of the most
   generic class.

Both cut-offs come from the spec's own classes, not from a number tuned per model. An image is then
`other` when its best negative concept beats its best class (the `other` column's logit is the best
negative's). Near-misses the vocabulary cannot name apart from the classes (a triangle when the classes
are circles and squares) stay with the classes and usually land in review; examples of `other` catch them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from autolabel.core.prompts import expand
from autolabel.core.spec import LabelSpec

MAX_CANDIDATES = 2000  # vocabulary words encoded at most (in the tokenizer's order: frequent words first)
STOPWORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "if", "of", "at", "by", "for", "with", "about", "against", "between",
    "into", "through", "during", "before", "after", "above", "below", "to", "from", "up", "down", "in", "out",
    "on", "off", "over", "under", "again", "further", "then", "once", "here", "there", "when", "where", "why",
    "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "no", "nor", "not",
    "only", "own", "same", "so", "than", "too", "very", "can", "will", "just", "don", "should", "now", "this",
    "that", "these", "those", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "having",
    "do", "does", "did", "doing", "would", "could", "ought", "i", "me", "my", "myself", "we", "our", "ours", "you",
    "your", "yours", "he", "him", "his", "she", "her", "hers", "it", "its", "they", "them", "their", "what",
    "which", "who", "whom", "whose", "one", "two", "also", "get", "got", "make", "made", "like",
})


@dataclass(frozen=True)
class Negatives:
    """The negative concepts kept, and their unit text embeddings (one row each)."""

    words: tuple[str, ...]
    matrix: np.ndarray  # (n, dim)

    def describe(self) -> dict[str, object]:
        """For the run metadata: how many, and a few of them."""
        return {"method": "negative concepts from the model's vocabulary (NegLabel-style)",
                "count": len(self.words), "sample": list(self.words[:20])}


def vocabulary_words(tokens: Iterable[str]) -> list[str]:
    """Whole words of a tokenizer vocabulary, in its order: CLIP's BPE marks word ends (`word</w>`),
    SentencePiece (`▁word`) and byte-level BPE (`Ġword`) word starts; other vocabularies are taken as words."""
    tokens = list(tokens)
    marker = next((m for m in ("</w>", "▁", "Ġ") if any(m in t for t in tokens[:5000])), "")
    words: dict[str, None] = {}
    for token in tokens:
        if marker == "</w>" and token.endswith(marker):
            word = token[: -len(marker)]
        elif marker in ("▁", "Ġ") and token.startswith(marker):
            word = token[len(marker):]
        elif not marker:
            word = token
        else:
            continue
        if word.isascii() and word.isalpha() and len(word) >= 3 and word.lower() == word:
            words[word] = None
    return list(words)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def mine(spec: LabelSpec, class_matrix: np.ndarray, vocabulary: Sequence[str],
         encode: Callable[[Sequence[str]], np.ndarray]) -> Negatives:
    """The negative concepts for `spec` (see the module docstring for the two rules)."""
    taken = {w.lower() for c in spec.classes for name in (c.name, *c.synonyms) for w in name.split()}
    if spec.other is not None:
        taken |= {w.lower() for w in spec.other.name.split()}
    candidates = [w for w in vocabulary if w not in STOPWORDS and w not in taken][:MAX_CANDIDATES]
    classes = _unit(np.asarray(class_matrix, np.float64))
    if not candidates:
        return Negatives((), np.zeros((0, classes.shape[1])))
    template = spec.templates[0]
    texts = _unit(np.asarray(encode([expand(template, w) for w in candidates]), np.float64))
    between = classes @ classes.T
    np.fill_diagonal(between, -np.inf)
    nearest_other = between.max(axis=1)  # per class: how close its nearest other class is
    synonym = ((texts @ classes.T) >= nearest_other[None, :]).any(axis=1)
    empty = _unit(_unit(np.asarray(encode([expand(t, "").replace("  ", " ") for t in spec.templates]),
                                   np.float64)).mean(axis=0))
    generic = texts @ empty > ((classes @ empty).max() + 1.0) / 2  # nearer the empty prompt than the classes

    keep = ~synonym & ~generic
    return Negatives(tuple(w for w, k in zip(candidates, keep, strict=True) if k), texts[keep])
