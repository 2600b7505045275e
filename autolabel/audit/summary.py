"""Class balance: images per class (the model's labels, and the truth when given) and the imbalance ratio."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from autolabel.audit.findings import Finding


@dataclass(frozen=True)
class ClassCount:
    """How many images a class has: by the model's label, and by the truth (None without one)."""

    name: str
    labelled: int
    truth: int | None = None


@dataclass(frozen=True)
class Balance:
    """Per-class counts in spec order and the largest/smallest ratio (over the basis column)."""

    classes: tuple[ClassCount, ...]
    basis: str  # "truth" or "label"
    ratio: float | None  # largest / smallest; None when a class has none (inf) or nothing was counted
    largest: str | None
    smallest: str | None


def class_balance(classes: Sequence[str], labels: Sequence[str | None],
                  truth: Sequence[str | None] | None = None) -> Balance:
    """Count images per class; the imbalance is measured on the truth when there is one."""
    by_label = Counter(x for x in labels if x is not None)
    by_truth = Counter(x for x in truth if x is not None) if truth is not None else None
    counts = tuple(ClassCount(c, by_label.get(c, 0), by_truth.get(c, 0) if by_truth is not None else None)
                   for c in classes)
    basis = "truth" if by_truth is not None else "label"
    values = {c.name: (c.truth if by_truth is not None else c.labelled) or 0 for c in counts}
    if not values or max(values.values()) == 0:
        return Balance(counts, basis, None, None, None)
    largest = max(values, key=lambda c: (values[c], -list(values).index(c)))
    smallest = min(values, key=lambda c: (values[c], list(values).index(c)))
    ratio = values[largest] / values[smallest] if values[smallest] else None
    return Balance(counts, basis, ratio, largest, smallest)


def balance_findings(balance: Balance) -> list[Finding]:
    """One `summary` row per class (score: 1 − its share of the largest class) and one for the whole table."""
    def count(c: ClassCount) -> int:
        return (c.truth if balance.basis == "truth" else c.labelled) or 0

    top = max((count(c) for c in balance.classes), default=0) or 1
    total = sum(count(c) for c in balance.classes) or 1
    out = []
    for c in balance.classes:
        truth = f", {c.truth} by the truth" if c.truth is not None else ""
        out.append(Finding("summary", None, 1.0 - count(c) / top,
                           f"class '{c.name}': {c.labelled} images labelled by the model{truth} "
                           f"({100 * count(c) / total:.1f}% by the {balance.basis})", label=c.name))
    if balance.largest is not None:
        ratio = "∞ (a class has no images)" if balance.ratio is None else f"{balance.ratio:.2f}"
        score = 1.0 if balance.ratio is None else 1.0 - 1.0 / balance.ratio
        out.append(Finding("summary", None, score,
                           f"imbalance by the {balance.basis}: largest/smallest = {ratio} "
                           f"('{balance.largest}' vs '{balance.smallest}')"))
    return out


def format_balance(balance: Balance) -> str:
    """The class table for stdout."""
    width = max([len("class")] + [len(c.name) for c in balance.classes])
    has_truth = balance.basis == "truth"
    lines = [f"{'class':<{width}}  {'labelled':>8}" + (f"  {'truth':>8}" if has_truth else "")]
    for c in balance.classes:
        lines.append(f"{c.name:<{width}}  {c.labelled:>8}" + (f"  {c.truth:>8}" if has_truth else ""))
    if balance.largest is not None:
        ratio = "∞" if balance.ratio is None else f"{balance.ratio:.2f}"
        lines.append(f"imbalance ({balance.basis}): {ratio} ('{balance.largest}' / '{balance.smallest}')")
    return "\n".join(lines)
