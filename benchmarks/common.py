"""Benchmark helpers: a random-init ViT-B/32-shaped CLIP on disk, photo-like JPEGs, interleaved timing."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "tiny-shapes"))

WORDS = [
    "a", "photo", "of", "the", "class", "number", "picture", "drawing", "one", "two", "three", "four",
    "five", "six", "seven", "eight", "nine", "zero", "red", "green", "blue", "yellow", "big", "small", "cat",
    "dog",
]


def save_vit_b32(folder: Path) -> Path:
    """Random-init CLIP with openai/clip-vit-base-patch32's exact shape (so its exact speed) and preprocessor."""
    import torch
    from tokenizer import build_tokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    if (folder / "model.safetensors").exists():
        return folder
    tok = build_tokenizer(WORDS)
    torch.manual_seed(0)
    config = CLIPConfig(text_config={"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                                     "pad_token_id": tok.pad_token_id})
    CLIPModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)  # shortest_edge 224, crop 224, bicubic, OpenAI mean/std
    return folder


def photo_like(seed: int, size: tuple[int, int]) -> Image.Image:
    """Smooth colour fields with shapes and mild noise: compresses and decodes like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(low).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(12):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(w // 40, w // 6))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    image = image.filter(ImageFilter.GaussianBlur(max(1, w // 800)))
    noise = rng.normal(0, 6, size=(h, w, 3))
    return Image.fromarray(np.clip(np.asarray(image, np.float32) + noise, 0, 255).astype(np.uint8))


def make_jpegs(folder: Path, n: int = 64) -> list[Path]:
    """n JPEGs, half 640×480 and half 3000×2000 (interleaved)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        size = (640, 480) if i % 2 == 0 else (3000, 2000)
        path = folder / f"img{i:03d}.jpg"
        if not path.exists():
            photo_like(i, size).save(path, quality=90)
        paths.append(path)
    return paths


def interleave(runs: dict[str, Callable[[], object]], repeats: int = 3) -> dict[str, list[float]]:
    """Time each callable `repeats` times, round-robin, so CPU-speed swings hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)
