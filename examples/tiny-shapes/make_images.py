"""Write N labelled tiny-shapes sample images (JPEG and PNG, nested class-free folders) and a manifest CSV.

    python examples/tiny-shapes/make_images.py OUT_DIR [--n 240] [--seed 1]
    python examples/tiny-shapes/make_images.py OUT_DIR --pairs      # two shapes per image, for multi-label

The manifest (OUT_DIR/manifest.csv) has columns path, truth, color, shape; paths are relative to OUT_DIR.
With --pairs it has path, colors, shapes: JSON arrays of the colours and shapes in the image (sorted).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from PIL import Image  # noqa: E402
from shapes import COLORS, SHAPES, draw_shape  # noqa: E402


def make_images(out: Path, n: int = 240, seed: int = 1, messy: bool = False) -> Path:
    """Draw n images (balanced over the 12 classes) under out/; returns the manifest path.

    With `messy`, also write two broken files (a truncated JPEG, a text file named .png) that a run must
    turn into error rows, and four ambiguous images (two different shapes side by side) that should land
    in the review queue; they are listed in the manifest with an empty truth.
    """
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        color, shape = list(COLORS)[i % 4], SHAPES[(i // 4) % 3]
        w = rng.randint(48, 200)
        h = w if rng.random() < 0.5 else rng.randint(48, 200)
        image = draw_shape(color, shape, rng, (w, h))
        folder = f"batch{i % 3}/part{(i // 3) % 2}"
        ext = "jpg" if i % 2 == 0 else "png"
        rel = f"{folder}/img{i:05d}.{ext}"
        (out / folder).mkdir(parents=True, exist_ok=True)
        image.save(out / rel, quality=92) if ext == "jpg" else image.save(out / rel)
        rows.append({"path": rel, "truth": f"{color} {shape}", "color": color, "shape": shape})
    if messy:
        (out / "broken").mkdir(exist_ok=True)
        first = (out / rows[0]["path"]).read_bytes()
        (out / "broken" / "truncated.jpg").write_bytes(first[: len(first) // 3])
        (out / "broken" / "notes.png").write_text("not an image\n")
        rows += [{"path": f"broken/{name}", "truth": "", "color": "", "shape": ""}
                 for name in ("truncated.jpg", "notes.png")]
        (out / "ambiguous").mkdir(exist_ok=True)
        pairs = [(("red", "circle"), ("blue", "square")), (("green", "triangle"), ("yellow", "circle")),
                 (("blue", "circle"), ("blue", "triangle")), (("yellow", "square"), ("red", "square"))]
        for k, (left, right) in enumerate(pairs):
            both = Image.new("RGB", (64, 64))
            both.paste(draw_shape(*left, rng, (32, 64)), (0, 0))
            both.paste(draw_shape(*right, rng, (32, 64)), (32, 0))
            both.save(out / "ambiguous" / f"pair{k}.png")
            rows.append({"path": f"ambiguous/pair{k}.png", "truth": "", "color": "", "shape": ""})
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "truth", "color", "shape"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def pair_image(left: tuple[str, str], right: tuple[str, str], rng: random.Random, side: int = 64,
               stacked: bool = False) -> Image.Image:
    """Two shapes in one square image: side by side (as --messy's ambiguous images), or one above the other."""
    both = Image.new("RGB", (side, side))
    half = (side, side // 2) if stacked else (side // 2, side)
    both.paste(draw_shape(*left, rng, half), (0, 0))
    both.paste(draw_shape(*right, rng, half), (0, side // 2) if stacked else (side // 2, 0))
    return both


def make_pairs(out: Path, n: int = 240, seed: int = 1, same_color: float = 0.15) -> Path:
    """Draw n two-shape images (colours differ, except a `same_color` share) for multi-label colour tags."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    colors, rows = list(COLORS), []
    for i in range(n):
        first = rng.choice(colors)
        second = first if rng.random() < same_color else rng.choice([c for c in colors if c != first])
        shapes = (rng.choice(SHAPES), rng.choice(SHAPES))
        image = pair_image((first, shapes[0]), (second, shapes[1]), rng, rng.choice((64, 96, 128)), rng.random() < 0.5)
        rel = f"pairs/pair{i:05d}.png"
        (out / "pairs").mkdir(exist_ok=True)
        image.save(out / rel)
        rows.append({"path": rel, "colors": json.dumps(sorted({first, second})),
                     "shapes": json.dumps(sorted(set(shapes)))})
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "colors", "shapes"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--messy", action="store_true",
                        help="add two broken files and four ambiguous two-shape images, as real folders have")
    parser.add_argument("--pairs", action="store_true", help="two shapes per image, colours and shapes as lists")
    args = parser.parse_args()
    manifest = (make_pairs(args.out, args.n, args.seed) if args.pairs
                else make_images(args.out, args.n, args.seed, args.messy))
    with open(manifest, newline="") as f:
        files = sum(1 for _ in csv.DictReader(f))  # what it really drew: --messy adds 4 ambiguous and 2 broken files
    extra = f" ({args.n} shapes, {files - args.n - 2} ambiguous, 2 broken)" if args.messy and not args.pairs else ""
    print(f"wrote {files} {'files' if extra else 'images'}{extra} and {manifest}")


if __name__ == "__main__":
    main()
