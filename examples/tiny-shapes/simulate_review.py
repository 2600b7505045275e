"""Stand in for the person at the report's review queue: label a few uncertain images of each class correctly.

    python examples/tiny-shapes/simulate_review.py LABELS MANIFEST --per-class 4 --out corrections.csv

Takes the review queue of LABELS (lowest margin first, as the report orders it), and for up to PER_CLASS
images of each true class writes `path,reviewed_label` with the truth from MANIFEST (make_images.py's),
translated to the part codes of codes.yaml: exactly the CSV the report's "download corrections" button
writes. Also writes TRUTH (path,label in codes) for `autolabel eval --truth`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shapes import CLASSES  # noqa: E402

CODES = {name: f"P-{101 + i}" for i, name in enumerate(CLASSES)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", type=Path)
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--per-class", type=int, default=4)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    args = parser.parse_args()
    truth = pd.read_csv(args.manifest, keep_default_na=False)
    truth = truth[truth.truth != ""].assign(code=lambda t: t.truth.map(CODES))
    root = args.manifest.resolve().parent
    truth.assign(path=truth.path)[["path", "code"]].rename(columns={"code": "label"}).to_csv(args.truth, index=False)
    table = pd.read_parquet(args.labels)
    queue = table[table.status == "review"].sort_values(["margin", "path"], kind="stable")
    queue = queue.merge(truth[["path", "code"]], on="path")
    picked = queue.groupby("code", sort=False).head(args.per_class)
    corrections = pd.DataFrame({"path": [str(root / p) for p in picked.path], "reviewed_label": picked.code})
    corrections.to_csv(args.out, index=False)
    print(f"reviewed {len(corrections)} of {len(queue)} uncertain images ({args.per_class} per class) → {args.out}")


if __name__ == "__main__":
    main()
