"""Train the tiny-shapes CLIP: a real transformers CLIPModel (~200k parameters) that knows 4 colours × 3 shapes.

Deterministic (fixed seeds, fixed thread count); about two minutes on 2 CPU cores. Writes a complete
checkpoint (safetensors weights, tokenizer, preprocessor config) to examples/tiny-shapes/model/.

    python examples/tiny-shapes/train.py [--out DIR] [--steps N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from shapes import COLORS, SHAPES, draw_shape  # noqa: E402
from tokenizer import build_tokenizer  # noqa: E402

SIZE = 32  # model input
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
SYNONYMS = {"red": ["crimson"], "blue": ["azure"], "yellow": ["golden"], "green": ["emerald"],
            "circle": ["disc", "round"], "square": ["box"], "triangle": ["pyramid"]}
# Captions for the full class, colour only, and shape only. The label specs used in the tests use other
# templates ("a {label} object", "a picture of something {label}", …), so zero-shot transfer is real.
FULL = ["a photo of a {c} {s}.", "a drawing of a {c} {s}.", "a {c} {s}.", "an image of the {c} {s}.",
        "a picture of a {c} {s}.", "a close-up photo of a {c} {s}.", "a small {c} {s}.", "a big {c} {s}.",
        "a blurry photo of a {c} {s}.", "a {s} that is {c}."]
COLOR_ONLY = ["a {c} shape.", "a photo of something {c}.", "a drawing in {c}.", "the colour {c}."]
SHAPE_ONLY = ["a {s}.", "a photo of a {s}.", "a drawing of a {s} shape.", "the shape of a {s}."]
EXTRA_WORDS = [
    "a", "an", "the", "of", "in", "is", "that", "this", "photo", "drawing", "image", "picture", "close-up", "small",
    "big", "blurry", "shape", "colour", "something", "object", "thing", "rendering", "sketch", "plain", "simple",
    "one", "my",
]


def vocabulary() -> list[str]:
    words = set(EXTRA_WORDS) | set(COLORS) | set(SHAPES)
    for syns in SYNONYMS.values():
        words |= set(syns)
    return sorted(words)


def preprocess(image: Image.Image) -> np.ndarray:
    """The checkpoint's own recipe: short side → 32 (bicubic), centre crop 32, CLIP mean/std. CHW float32."""
    w, h = image.size
    new = (SIZE, int(SIZE * h / w)) if w <= h else (int(SIZE * w / h), SIZE)
    image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = (new[0] - SIZE) // 2, (new[1] - SIZE) // 2
    array = np.asarray(image.crop((left, top, left + SIZE, top + SIZE)), np.float32) / 255.0
    return ((array - MEAN) / STD).transpose(2, 0, 1)


def name(word: str, rng: random.Random) -> str:
    return rng.choice(SYNONYMS[word]) if word in SYNONYMS and rng.random() < 0.25 else word


def caption(color: str, shape: str, rng: random.Random) -> tuple[str, tuple[str | None, str | None]]:
    """A caption and what it asserts: (colour or None, shape or None)."""
    r = rng.random()
    if r < 0.6:
        return rng.choice(FULL).format(c=name(color, rng), s=name(shape, rng)), (color, shape)
    if r < 0.8:
        return rng.choice(COLOR_ONLY).format(c=name(color, rng)), (color, None)
    return rng.choice(SHAPE_ONLY).format(s=name(shape, rng)), (None, shape)


def make_pool(n: int, rng: random.Random) -> tuple[np.ndarray, list[tuple[str, str]]]:
    images, labels = [], []
    for i in range(n):
        color, shape = list(COLORS)[i % 4], SHAPES[(i // 4) % 3]
        w = rng.randint(40, 140)
        h = w if rng.random() < 0.6 else rng.randint(40, 140)
        images.append(preprocess(draw_shape(color, shape, rng, (w, h))))
        labels.append((color, shape))
    return np.stack(images), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "model")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--pool", type=int, default=12000)
    parser.add_argument("--batch", type=int, default=192)
    args = parser.parse_args()

    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = random.Random(0)
    started = time.time()
    tokenizer = build_tokenizer(vocabulary())
    pool, labels = make_pool(args.pool, rng)
    print(f"drew {len(pool)} images in {time.time() - started:.0f}s; vocab {len(tokenizer)} tokens", flush=True)

    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=24, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(image_size=SIZE, patch_size=8, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=64))
    print(f"{sum(p.numel() for p in model.parameters()):,} parameters", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=args.steps, pct_start=0.1)
    model.train()
    for step in range(args.steps):
        idx = [rng.randrange(len(pool)) for _ in range(args.batch)]
        pixels = torch.from_numpy(pool[idx])
        if rng.random() < 0.5:
            pixels = pixels.flip(-1)
        caps = [caption(*labels[i], rng) for i in idx]
        tokens = tokenizer([c for c, _ in caps], padding=True, return_tensors="pt")
        # Multi-positive contrastive targets: a caption matches every image it describes truthfully.
        truth = torch.tensor([
            [(c is None or c == labels[i][0]) and (s is None or s == labels[i][1]) for _, (c, s) in caps]
            for i in idx
        ], dtype=torch.float32)
        out = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels)
        logits = out.logits_per_image
        loss_i = -(truth / truth.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
        loss_t = -(truth.T / truth.T.sum(1, keepdim=True) * F.log_softmax(logits.T, 1)).sum(1).mean()
        loss = (loss_i + loss_t) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  scale {model.logit_scale.exp().item():.1f}  "
                  f"{time.time() - started:.0f}s", flush=True)
    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    processor = CLIPImageProcessor(size={"shortest_edge": SIZE}, crop_size={"height": SIZE, "width": SIZE})
    processor.save_pretrained(args.out)
    print(f"saved {args.out} in {time.time() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
