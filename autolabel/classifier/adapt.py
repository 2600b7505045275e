"""Learning from reviewed examples: a Tip-Adapter cache model over example embeddings, tuned by leave-one-out.

The zero-shot logits `s·cos(image, class text)` get an additive term from the examples (Zhang et al.,
"Tip-Adapter", ECCV 2022): every example is a key; an image's affinity to it decays with their cosine
distance, `exp(-β (1 - cos))`, and each class gains `α ×` the summed affinities of its examples. Unlike a
prototype (the mean of a class's examples), the keys keep every visual mode of a class (a "vehicle" made
of cars and boats), and a class without examples simply gains nothing, so it still works from its text.

α and β are not tuned by hand: both are scale-free (α in units of the model's logit scale, β in units of
the median example-to-example distance) and chosen on a grid by leave-one-out accuracy on the examples
(ties: the smaller α, then lower log-loss). Ties are the rule, not the exception — a handful of examples is
often classified perfectly by many settings — and the log-loss of perfectly classified examples keeps falling
as α grows, so preferring it made every image near an example certain (confidence 1.0, wrong ones accepted);
the smallest α that reaches the best accuracy changes zero-shot least and keeps confidences meaningful.
If no setting beats zero-shot on that estimate, the adapter is not used, and the fit says so — unless the text
is weak: zero-shot names fewer than half of the examples right (`text_is_weak`: part codes, made-up names), or at
most 1.5× chance. Then the examples are the better source: α takes its largest value and only β is estimated,
because with one example for most classes the leave-one-out estimate cannot see what a class's single example
teaches (it chose α 0.25 → 73% on the demo's part codes with 16 examples over 12 classes; α 8 → 98%); where
leave-one-out cannot beat zero-shot at all (each example the only one of its look), the adapter is used with
fixed α, β. A class's only example is no evidence for the temperature either (left out, nothing of its class
remains to be found). Multi-label
specs use `fit_multi_label`: an example image is a key of each of its classes, and the estimate is the leave-
one-image-out micro-F1 of the labels.

With examples of `other`, its column also gets a constant "background" affinity, as from a phantom
example at distance d₀ from every image: an image farther than that from every class example leans to
`other` even where no `other` example resembles it. d₀ is chosen on the same leave-one-out grid (or left
out when it does not help).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

BACKGROUNDS = (0.03125, 0.0625, 0.125, 0.25, 0.5)  # × the median distance: where "near no example" starts
ALPHAS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # × the model's logit scale
BETAS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # ÷ the median distance between examples
TEMPERATURES = (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)  # 1st wins ties
MAX_QUERIES_PER_CLASS = 4  # leave-one-out on at most this many examples per class …
MAX_QUERIES = 1024  # … and this many in all (1,000 classes × 16 examples fit in seconds)
_BLOCK = 2048  # queries per block when scoring the grid
# Zero-shot right on at most this many times chance of the examples (and at most half of them): the text does
# not know these classes, and a leave-one-out estimate no better than it (each example the only one of its
# look: typical examples from `autolabel queue` are picked to be unlike each other) is no reason to keep it.
# Measured on make_images.py --hard, the first 2 per class of the queue: 9% with zero-shot kept, 98% adapted
# with α 1, β 4.
UNINFORMED = 1.5
BLIND_ALPHA, BLIND_BETA = 1.0, 4.0  # then: Tip-Adapter's own defaults in these units (α 1, β ≈ 5.5 on CLIP)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _by_class(affinity: np.ndarray, classes: np.ndarray, n_columns: int) -> np.ndarray:
    """Sum affinity columns (keys sorted by class) into one column per class: (rows, n_columns)."""
    out = np.zeros((len(affinity), n_columns), np.float64)
    if affinity.shape[1]:
        present, starts = np.unique(classes, return_index=True)
        out[:, present] = np.add.reduceat(affinity, starts, axis=1)
    return out


@dataclass(frozen=True)
class Adapter:
    """The cache model: unit keys, their class indices, and the chosen α (absolute) and β (absolute)."""

    keys: np.ndarray  # (n_examples, dim), float32, unit rows, sorted by class
    classes: np.ndarray  # (n_examples,) int, column index of each key's class (sorted)
    n_columns: int  # columns of the logits it adds to (classes, plus `other` when used)
    alpha: float
    beta: float
    background_column: int | None = None  # `other`'s column, when it has a background affinity
    background: float = 0.0  # that affinity, exp(-β d₀)
    temperature: float = 1.0  # the adapted logits are divided by it (≥ 1: fitted on the leave-one-out log-loss)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """α · Σ_{examples of c} exp(-β (1 - cos)) for every image (rows) and column c (+ the background)."""
        affinity = np.exp(-self.beta * (1.0 - _unit(np.asarray(images, np.float32)) @ self.keys.T))
        summed = _by_class(affinity, self.classes, self.n_columns)
        if self.background_column is not None:
            summed[:, self.background_column] += self.background
        return self.alpha * summed


@dataclass(frozen=True)
class Fit:
    """What was learnt from the examples, for the run metadata and the summary."""

    method: str
    used: bool  # False: zero-shot was at least as good on the leave-one-out estimate
    examples: dict[str, int]  # per class (and `other`)
    loo_zero_shot: float  # leave-one-out accuracy on the examples
    loo_adapted: float
    alpha: float = 0.0  # in units of the logit scale
    beta: float = 0.0  # in units of the median example distance
    background: float | None = None  # d₀ in units of the median example distance (None: not used)
    queries: int = 0
    temperature: float = 1.0
    note: str = ""
    adapter: Adapter | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, object]:
        """JSON-ready."""
        return {"method": self.method, "used": self.used, "examples_per_class": self.examples,
                "loo_accuracy": {"zero_shot": round(self.loo_zero_shot, 4), "adapted": round(self.loo_adapted, 4)},
                "alpha": self.alpha, "beta": self.beta, "other_background": self.background,
                "temperature": self.temperature,
                "loo_queries": self.queries, "note": self.note}


def _queries(classes: np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Indices of at most `per_class` examples of each class, chosen with a fixed seed."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        picked.extend(members if len(members) <= per_class else rng.choice(members, per_class, replace=False))
    return np.sort(np.asarray(picked, dtype=np.int64))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class _LeaveOneOut:
    """The examples (sorted by class) as keys, and the queries scored against all keys but their own."""

    classes: np.ndarray  # (n_examples,) each key's column, sorted
    queries: np.ndarray  # indices of the examples scored
    zs: np.ndarray  # (queries, columns) their zero-shot logits
    distance: np.ndarray  # (queries, n_examples) cosine distance, float32
    unit_distance: float  # the median distance between two examples

    @property
    def truth(self) -> np.ndarray:
        return self.classes[self.queries]

    def summed(self, b: float, affinity: np.ndarray) -> np.ndarray:
        """Per column, each query's summed affinity to the keys (its own left out), β = b ÷ the median distance;
        `affinity` is scratch memory the shape of `distance`."""
        np.multiply(self.distance, np.float32(-b / self.unit_distance), out=affinity)
        np.exp(affinity, out=affinity)
        affinity[np.arange(len(self.queries)), self.queries] = 0.0
        return _by_class(affinity, self.classes, self.zs.shape[1])


def _median_distance(distance: np.ndarray, queries: np.ndarray) -> float:
    """The median distance between two examples, on a sample of at most 200,000 pairs (never a query to itself)."""
    sample = np.random.default_rng(0).choice(distance.size, min(distance.size, 200_000), replace=False)
    sample = sample[sample % distance.shape[1] != queries[sample // distance.shape[1]]]
    return float(np.median(distance.ravel()[sample])) or 1e-6


def _with_background(summed: np.ndarray, other_column: int | None, b: float, d0: float | None) -> np.ndarray:
    """`summed` plus `other`'s background affinity exp(-b d₀) (a copy), or `summed` itself without one."""
    if d0 is None:
        return summed
    summed = summed.copy()
    summed[:, other_column] += np.exp(-b * d0)
    return summed


def _best_setting(loo: _LeaveOneOut, scale: float, alphas: Sequence[float], backgrounds: Sequence[float | None],
                  other_column: int | None) -> tuple[float, float, float, float | None]:
    """(leave-one-out accuracy, α, β, d₀) of the best setting on the grid: accuracy, then the smaller α, then
    the lower log-loss."""
    truth, rows = loo.truth, np.arange(len(loo.queries))
    best: tuple | None = None  # (accuracy, -alpha, -nll, alpha, beta, background)
    affinity = np.empty_like(loo.distance)
    for b in BETAS:
        per_class = loo.summed(b, affinity)
        for d0 in backgrounds:
            summed = _with_background(per_class, other_column, b, d0)
            for a in alphas:
                logits = loo.zs + a * scale * summed
                accuracy = float(np.mean(logits.argmax(axis=1) == truth))
                if best is not None and accuracy < best[0]:
                    continue  # the log-loss only breaks ties
                nll = float(-_log_softmax(logits)[rows, truth].mean())
                score = (accuracy, -a, -nll, a, b, d0)
                if best is None or score[:3] > best[:3]:
                    best = score
    assert best is not None
    accuracy, _, _, a, b, d0 = best
    return accuracy, a, b, d0


def _fitted_temperature(loo: _LeaveOneOut, scale: float, a: float, b: float, d0: float | None,
                        other_column: int | None) -> float:
    """The temperature of the chosen setting, on the queries whose class has another example."""
    summed = _with_background(loo.summed(b, np.empty_like(loo.distance)), other_column, b, d0)
    truth = loo.truth
    # A class's only example, left out, has nothing of its class to be found: its miss is no mislabelling.
    seen_twice = np.isin(truth, np.flatnonzero(np.bincount(loo.classes) > 1))
    return _temperature((loo.zs + a * scale * summed)[seen_twice], truth[seen_twice]) if seen_twice.any() else 1.0


def fit(embeddings: np.ndarray, classes: np.ndarray, zero_shot: np.ndarray, scale: float,
        names: list[str], other_column: int | None = None) -> Fit:
    """Choose α, β (and d₀) by leave-one-out on the examples; `zero_shot` are the examples' zero-shot logits.

    `classes[i]` is the logits column of example i; `names` names every column (for the report);
    `other_column` is `other`'s column when the spec has one.
    """
    order = np.argsort(np.asarray(classes, np.int64), kind="stable")
    keys = _unit(np.asarray(embeddings, np.float32))[order]
    classes = np.asarray(classes, np.int64)[order]
    zero_shot = np.asarray(zero_shot, np.float64)[order]
    counts = {names[c]: int((classes == c).sum()) for c in sorted(set(classes.tolist()))}
    n_classes = len(set(classes.tolist()))
    queries = _queries(classes, max(1, min(MAX_QUERIES_PER_CLASS, MAX_QUERIES // max(1, n_classes))))
    zs = zero_shot[queries]
    zs_accuracy = float(np.mean(zs.argmax(axis=1) == classes[queries]))
    if len(keys) < 2:
        return Fit("tip-adapter", False, counts, zs_accuracy, zs_accuracy, queries=len(queries),
                   note="one example: nothing to learn from")
    weak = text_is_weak(zero_shot, classes)
    distance = 1.0 - keys[queries] @ keys.T  # (q, n), float32
    loo = _LeaveOneOut(classes, queries, zs, distance, _median_distance(distance, queries))
    backgrounds: tuple[float | None, ...] = (None,)
    if other_column is not None and (classes == other_column).any():
        backgrounds += BACKGROUNDS
    accuracy, a, b, d0 = _best_setting(loo, scale, ALPHAS[-1:] if weak else ALPHAS, backgrounds, other_column)
    text_blind = zs_accuracy <= min(UNINFORMED / zs.shape[1], 0.5)
    if accuracy <= zs_accuracy and not (weak or text_blind):
        return Fit("tip-adapter", False, counts, zs_accuracy, accuracy, a, b, None, len(queries),
                   note="zero-shot kept: the examples did not improve its leave-one-out accuracy")
    note = WEAK_NOTE if weak else ""
    if accuracy <= zs_accuracy:  # text-blind: leave-one-out cannot rank the settings, nor calibrate them
        a, b, d0, t = BLIND_ALPHA, BLIND_BETA, None, 1.0
        note = ("zero-shot knows nothing of these classes and no example has another of its look to check it "
                f"against: the adapter is used with α {a}, β {b}")
    else:
        t = _fitted_temperature(loo, scale, a, b, d0, other_column)
    adapter = Adapter(keys, classes, zs.shape[1], a * scale, b / loo.unit_distance,
                      other_column if d0 is not None else None, float(np.exp(-b * d0)) if d0 is not None else 0.0, t)
    return Fit("tip-adapter", True, counts, zs_accuracy, accuracy, a, b, d0, len(queries), temperature=t,
               note=note, adapter=adapter)


def text_is_weak(zero_shot: np.ndarray, classes: np.ndarray) -> bool:
    """Whether zero-shot names fewer than half of the examples right: the text tower does not know these classes
    well enough to be preferred over the examples (part codes: 6–25% on 16 examples of 12 codes, chance 8%)."""
    return bool(np.mean(np.asarray(zero_shot).argmax(axis=1) == classes) < 0.5)


WEAK_NOTE = ("zero-shot names fewer than half of the examples right: the examples decide (α at its largest, β by "
             "leave-one-out)")


def _temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """Temperature scaling (Guo et al., 2017) on the leave-one-out logits, never sharper than as fitted: examples
    the adapter gets wrong (mislabelled ones, or a class it cannot separate) soften every confidence, so the
    spec's thresholds still send doubtful images to review."""
    rows = np.arange(len(truth))
    losses = [float(-_log_softmax(logits / t)[rows, truth].mean()) for t in TEMPERATURES]
    return TEMPERATURES[int(np.argmin(losses))]


def _micro_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    denominator = int(predicted.sum() + truth.sum())
    return 2.0 * int((predicted & truth).sum()) / denominator if denominator else 1.0


def fit_multi_label(embeddings: np.ndarray, label_sets: Sequence[Sequence[int]], zero_shot: np.ndarray, scale: float,
                    names: list[str], log_odds: Callable[[np.ndarray], np.ndarray], thresholds: np.ndarray) -> Fit:
    """The multi-label cache model: an example image is a key of every class it has (none: it is a key of none,
    and still a query that shows which classes must stay off). α and β are chosen as in `fit`, by
    leave-one-image-out micro-F1 of the labels (`log_odds(logits)` against the thresholds' log-odds), ties
    broken by the mean binary log-loss, then the smaller α; zero-shot is kept unless the F1 improves.
    """
    images = _unit(np.asarray(embeddings, np.float32))
    zero_shot = np.asarray(zero_shot, np.float64)
    truth = np.zeros(zero_shot.shape, dtype=bool)
    for i, columns in enumerate(label_sets):
        truth[i, list(columns)] = True
    owner = np.asarray([i for i, columns in enumerate(label_sets) for _ in columns], np.int64)
    classes = np.asarray([c for columns in label_sets for c in columns], np.int64)
    order = np.argsort(classes, kind="stable")
    owner, classes = owner[order], classes[order]
    keys = images[owner]
    counts = {names[c]: int((classes == c).sum()) for c in sorted(set(classes.tolist()))}
    queries = np.arange(len(images))
    if len(queries) > MAX_QUERIES:
        queries = np.sort(np.random.default_rng(0).choice(len(images), MAX_QUERIES, replace=False))
    cut = np.log(np.clip(thresholds, 1e-12, 1 - 1e-12)) - np.log1p(-np.clip(thresholds, 1e-12, 1 - 1e-12))
    zs, wanted = zero_shot[queries], truth[queries]
    zs_f1 = _micro_f1(log_odds(zs) >= cut, wanted)
    method = "tip-adapter (multi-hot)"
    if len(images) < 2 or not len(keys):
        return Fit(method, False, counts, zs_f1, zs_f1, queries=len(queries), note="too few examples to learn from")
    distance = 1.0 - images[queries] @ keys.T  # (queries, keys)
    own = owner[None, :] == queries[:, None]  # a query's own keys are left out
    others = distance[~own]
    unit_distance = float(np.median(others)) if others.size else 1e-6
    unit_distance = unit_distance or 1e-6
    best: tuple | None = None  # (f1, -log-loss, -alpha, alpha, beta)
    for b in BETAS:
        affinity = np.exp(distance * np.float32(-b / unit_distance))
        affinity[own] = 0.0
        per_class = _by_class(affinity, classes, zs.shape[1])
        for a in ALPHAS:
            odds = log_odds(zs + a * scale * per_class)
            f1 = _micro_f1(odds >= cut, wanted)
            if best is not None and f1 < best[0]:
                continue
            loss = float(np.where(wanted, np.logaddexp(0.0, -odds), np.logaddexp(0.0, odds)).mean())
            score = (f1, -loss, -a, a, b)
            if best is None or score[:3] > best[:3]:
                best = score
    assert best is not None
    f1, _, _, a, b = best
    note = "leave-one-image-out micro-F1 of the labels (reported as loo_accuracy)"
    if f1 <= zs_f1:
        return Fit(method, False, counts, zs_f1, f1, a, b, None, len(queries),
                   note="zero-shot kept: the examples did not improve its " + note)
    adapter = Adapter(keys, classes, zs.shape[1], a * scale, b / unit_distance)
    return Fit(method, True, counts, zs_f1, f1, a, b, None, len(queries), note=note, adapter=adapter)
