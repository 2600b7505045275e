"""The tiny-shapes world: coloured circles, squares and triangles on varied backgrounds, drawn with Pillow."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 210, 20),
}
SHAPES = ("circle", "square", "triangle")
CLASSES = [f"{c} {s}" for c in COLORS for s in SHAPES]


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int = 25) -> tuple[int, int, int]:
    return tuple(max(0, min(255, v + rng.randint(-amount, amount))) for v in rgb)  # type: ignore[return-value]


def _background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Low-saturation backgrounds: flat, two-tone gradient, or noisy."""
    w, h = size
    base = rng.randint(40, 235)
    tint = [max(0, min(255, base + rng.randint(-18, 18))) for _ in range(3)]
    image = Image.new("RGB", size, tuple(tint))
    style = rng.random()
    draw = ImageDraw.Draw(image)
    if style < 0.35:
        other = max(0, min(255, base + rng.choice([-1, 1]) * rng.randint(30, 70)))
        for y in range(h):
            t = y / max(1, h - 1)
            v = int(base * (1 - t) + other * t)
            draw.line([(0, y), (w, y)], fill=(v, v, v))
    elif style < 0.65:
        for _ in range(rng.randint(20, 60)):
            x, y = rng.randrange(w), rng.randrange(h)
            v = max(0, min(255, base + rng.randint(-40, 40)))
            r = rng.randint(1, 3)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(v, v, v))
    return image


def draw_shape(color: str, shape: str, rng: random.Random, size: tuple[int, int] = (64, 64)) -> Image.Image:
    """One image of a `color` `shape`, placed inside the central square (so centre crops keep it)."""
    w, h = size
    side = min(w, h)
    image = _background(size, rng)
    draw = ImageDraw.Draw(image)
    extent = rng.uniform(0.35, 0.8) * side
    left0, top0 = (w - side) / 2, (h - side) / 2
    x0 = left0 + rng.uniform(0.05 * side, side - extent - 0.05 * side)
    y0 = top0 + rng.uniform(0.05 * side, side - extent - 0.05 * side)
    box = [x0, y0, x0 + extent, y0 + extent]
    fill = _jitter(COLORS[color], rng)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(x0 + extent / 2, y0), (x0 + extent, y0 + extent), (x0, y0 + extent)], fill=fill)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return image


def near_copy(source: Path, stem: str, kind: int, quality: int = 70) -> str:
    """Plant a near-duplicate of source beside it (kind 0: exact copy, 1: JPEG re-encode, 2: 80% size); its name."""
    if kind == 0:
        name = f"{stem}{source.suffix}"
        shutil.copy(source, source.parent / name)
        return name
    image = Image.open(source).convert("RGB")
    if kind == 1:
        name = f"{stem}.jpg"
        image.save(source.parent / name, quality=quality)
        return name
    name = f"{stem}{source.suffix}"
    image.resize((int(image.width * 0.8), int(image.height * 0.8)), Image.Resampling.BICUBIC).save(source.parent / name)
    return name
