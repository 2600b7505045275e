"""Stand in for the person who works through a review queue: label its first rows in order, skip junk.

    python examples/tiny-shapes/simulate_review.py QUEUE MANIFEST --first 24 --out corrections.csv --truth T.csv

QUEUE is a file `autolabel queue` wrote: the first FIRST rows (by rank) get their true label in
`reviewed_label`, translated to the part codes of codes.yaml (hard-codes.yaml's truth is a code already);
images that are none of the classes (empty truth in MANIFEST: broken, ambiguous, junk) are skipped, left
empty, as a person would. The rest of the queue stays empty too: exactly the file `autolabel run --examples`
and `autolabel queue --examples` read. Nothing is picked by its truth: only the order the tool chose counts.

Given a labels table instead of a queue (--least-margin), it takes the first FIRST rows of today's review
order instead (status review, lowest margin first), for comparison. Also writes TRUTH (path,label in codes)
for `autolabel eval --truth`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shapes import CLASSES  # noqa: E402

CODES = {name: f"P-{101 + i}" for i, name in enumerate(CLASSES)}


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"path": str, "reviewed_label": str})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queue", type=Path, help="a queue from `autolabel queue` (or a labels table: --least-margin)")
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--first", type=int, default=None, help="review this many rows, in order [default: all]")
    parser.add_argument("--least-margin", action="store_true", help="QUEUE is a labels table: today's order")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    args = parser.parse_args()
    truth = pd.read_csv(args.manifest, keep_default_na=False)
    root = args.manifest.resolve().parent
    code = {str(root / p): CODES.get(t, t) for p, t in zip(truth.path, truth.truth, strict=True)}
    known = truth[truth.truth != ""]
    pd.DataFrame({"path": known.path, "label": [CODES.get(t, t) for t in known.truth]}).to_csv(args.truth, index=False)
    queue = read(args.queue)
    if args.least_margin:
        queue = queue[queue.status == "review"].sort_values(["margin", "path"], kind="stable")
        queue = pd.DataFrame({"path": [str(root / p) for p in queue.path], "reviewed_label": None})
    else:
        queue = queue.sort_values("rank", kind="stable").reset_index(drop=True)
    first = len(queue) if args.first is None else args.first
    labels = [code.get(str(p)) or None if i < first else None for i, p in enumerate(queue.path)]
    queue["reviewed_label"] = pd.Series(labels, index=queue.index, dtype=object)
    queue.to_csv(args.out, index=False)
    done = sum(label is not None for label in labels)
    print(f"reviewed the first {min(first, len(queue))} of {len(queue)} rows in order: {done} labelled, "
          f"{min(first, len(queue)) - done} skipped (none of the classes) → {args.out}")


if __name__ == "__main__":
    main()
