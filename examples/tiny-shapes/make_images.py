"""Write N labelled tiny-shapes sample images (JPEG and PNG, nested class-free folders) and a manifest CSV.

    python examples/tiny-shapes/make_images.py OUT_DIR [--n 240] [--seed 1]
    python examples/tiny-shapes/make_images.py OUT_DIR --pairs      # two shapes per image, for multi-label
    python examples/tiny-shapes/make_images.py OUT_DIR --hard       # hard-codes.yaml's world (see make_hard)

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


def write_manifest(out: Path, rows: list[dict]) -> Path:
    """manifest.csv of the drawn images: path, truth, color, shape."""
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "truth", "color", "shape"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest

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
    return write_manifest(out, rows)


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


HARD_CLASSES = {  # hard-codes.yaml: six part codes, each two unlike looks (two modes), imbalanced, with junk
    "Q-201": [("red", "circle"), ("blue", "triangle")],
    "Q-202": [("green", "square"), ("yellow", "circle")],
    "Q-203": [("blue", "circle"), ("red", "square")],
    "Q-204": [("yellow", "triangle"), ("green", "circle")],
    "Q-205": [("red", "triangle"), ("yellow", "square")],
    "Q-206": [("blue", "square"), ("green", "triangle")],
}
HARD_SHARES = (0.34, 0.22, 0.16, 0.12, 0.09, 0.07)  # of the images that are not junk
HARD_MODE_SHARE = 0.7  # a class's first look; the other look is the rarer one


def make_hard(out: Path, n: int = 300, seed: int = 1, junk: float = 0.08) -> Path:
    """A harder world for the review planner: six imbalanced two-look classes under codes no text tower knows,
    and a `junk` share of images that are none of them (noise, blank cards, two shapes side by side), which
    a person skips (empty truth in the manifest)."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "hard").mkdir(exist_ok=True)
    rows = []
    n_junk = round(n * junk)
    counts = [round((n - n_junk) * share) for share in HARD_SHARES]
    plan = [(code, k) for code, count in zip(HARD_CLASSES, counts, strict=True) for k in range(count)]
    plan += [("", k) for k in range(n_junk)]
    rng.shuffle(plan)
    for i, (code, k) in enumerate(plan):
        side = rng.randint(48, 160)
        if code:
            look = HARD_CLASSES[code][0 if rng.random() < HARD_MODE_SHARE else 1]
            image = draw_shape(*look, rng, (side, side))
        else:
            image = _junk(rng, side, k)
        rel = f"hard/img{i:05d}.png"
        image.save(out / rel)
        rows.append({"path": rel, "truth": code, "color": "", "shape": ""})
    return write_manifest(out, rows)


def _junk(rng: random.Random, side: int, k: int) -> Image.Image:
    if k % 3 == 0:
        return Image.effect_noise((side, side), rng.randint(30, 90)).convert("RGB")
    if k % 3 == 1:
        return Image.new("RGB", (side, side), tuple(rng.randint(0, 255) for _ in range(3)))
    colors, shapes = list(COLORS), list(SHAPES)
    return pair_image((rng.choice(colors), rng.choice(shapes)), (rng.choice(colors), rng.choice(shapes)), rng, side)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--messy", action="store_true",
                        help="add two broken files and four ambiguous two-shape images, as real folders have")
    parser.add_argument("--pairs", action="store_true", help="two shapes per image, colours and shapes as lists")
    parser.add_argument("--hard", action="store_true", help="hard-codes.yaml's world: imbalanced two-look classes, "
                        "8%% junk")
    args = parser.parse_args()
    manifest = (make_pairs(args.out, args.n, args.seed) if args.pairs else make_hard(args.out, args.n, args.seed)
                if args.hard else make_images(args.out, args.n, args.seed, args.messy))
    with open(manifest, newline="") as f:
        files = sum(1 for _ in csv.DictReader(f))  # what it really drew: --messy adds 4 ambiguous and 2 broken files
    extra = (f" ({args.n} shapes, {files - args.n - 2} ambiguous, 2 broken)"
             if args.messy and not (args.pairs or args.hard) else "")
    print(f"wrote {files} {'files' if extra else 'images'}{extra} and {manifest}")


if __name__ == "__main__":
    main()
