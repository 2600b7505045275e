"""Pixel confirmation of duplicate candidates: small whole-frame thumbnails compared, then crops of either one."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

BASE_PX = 64  # side of the thumbnail kept per candidate image; every comparison is resampled from it
CROP_STEPS = (0.0, 0.04, 0.08)  # fraction cut from each side when looking for a crop of the other image
GAIN = (0.87, 1.15)  # whole-frame tone change tolerated: y ≈ gain·x + offset
OFFSET = 0.06
CROP_SEARCH_BELOW = 3.0  # whole-frame distances above this are not worth a crop search


@dataclass(frozen=True)
class PixelRule:
    """Limits (on a 0–1 colour scale) under which two thumbnails show the same picture."""

    mean16: float = 0.05  # mean absolute difference of 16×16 thumbnails
    mean8: float = 0.04  # mean absolute difference of 8×8 thumbnails
    cell8: float = 0.14  # second-largest difference of any 8×8 cell (in its worst channel)
    crops: bool = True  # also compare crops of up to 8% per side of either image


def base_thumbnail(image: Image.Image) -> np.ndarray:
    """The whole frame box-filtered to BASE_PX × BASE_PX RGB, as its integral image (float64)."""
    pixels = np.asarray(image.convert("RGB").resize((BASE_PX, BASE_PX), Image.Resampling.BOX), np.float64)
    out = np.zeros((BASE_PX + 1, BASE_PX + 1, 3), np.float64)
    out[1:, 1:] = pixels.cumsum(0).cumsum(1) / 255.0
    return out


def _views(integral: np.ndarray, side: int, boxes: np.ndarray) -> np.ndarray:
    """(boxes, side, side, 3): each crop box (left, top, right, bottom cut, as fractions) area-averaged to side².

    The integral image of a picture made of constant pixels is bilinear inside each pixel, so
    interpolating it gives exact box filtering at fractional coordinates.
    """
    n = integral.shape[0] - 1
    t = np.linspace(0.0, 1.0, side + 1)
    xs = n * (boxes[:, 0:1] + (1 - boxes[:, 0:1] - boxes[:, 2:3]) * t)
    ys = n * (boxes[:, 1:2] + (1 - boxes[:, 1:2] - boxes[:, 3:4]) * t)
    x0 = np.clip(np.floor(xs).astype(np.intp), 0, n - 1)
    y0 = np.clip(np.floor(ys).astype(np.intp), 0, n - 1)
    fx, fy = (xs - x0)[:, None, :, None], (ys - y0)[:, :, None, None]
    yy, xx = y0[:, :, None], x0[:, None, :]
    f = (integral[yy, xx] * (1 - fy) * (1 - fx) + integral[yy, xx + 1] * (1 - fy) * fx
         + integral[yy + 1, xx] * fy * (1 - fx) + integral[yy + 1, xx + 1] * fy * fx)
    sums = f[:, 1:, 1:] - f[:, :-1, 1:] - f[:, 1:, :-1] + f[:, :-1, :-1]
    area = (np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :])[..., None]
    return sums / area


def _tone_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each x (leading axis: one per pair) mapped by the least-squares gain·x + offset towards its y, within
    the tolerated range."""
    axes = tuple(range(1, x.ndim))
    mx, my = x.mean(axis=axes, keepdims=True), y.mean(axis=axes, keepdims=True)
    var = ((x - mx) ** 2).mean(axis=axes, keepdims=True)
    gain = np.clip(((x - mx) * (y - my)).mean(axis=axes, keepdims=True) / np.maximum(var, 1e-6), *GAIN)
    return gain * x + np.clip(my - gain * mx, -OFFSET, OFFSET)


_WHOLE = np.zeros((1, 4))
_CROPS = np.array([b for b in itertools.product(CROP_STEPS, repeat=4) if any(b)])


def _distance(x8: np.ndarray, x16: np.ndarray, y8: np.ndarray, y16: np.ndarray, rule: PixelRule) -> np.ndarray:
    """Per view of x (leading axis): the largest of the three differences, each over its limit."""
    d8, d16 = np.abs(x8 - y8), np.abs(x16 - y16)
    cells = d8.max(axis=-1).reshape(len(d8), -1)
    return np.maximum.reduce([d16.mean(axis=(1, 2, 3)) / rule.mean16, d8.mean(axis=(1, 2, 3)) / rule.mean8,
                              np.partition(cells, -2, axis=1)[:, -2] / rule.cell8])


@dataclass(frozen=True)
class Thumbnail:
    """A base thumbnail with its whole-frame 8×8 and 16×16 views, made once per image, not once per pair."""

    integral: np.ndarray
    v8: np.ndarray
    v16: np.ndarray

    @classmethod
    def of(cls, integral: np.ndarray) -> Thumbnail:
        return cls(integral, _whole(integral, 8), _whole(integral, 16))


def _whole(integral: np.ndarray, side: int) -> np.ndarray:
    """`_views(integral, side, _WHOLE)` where side divides BASE_PX: the grid falls on whole pixels, so the
    interpolation weights are 0 and 1 and the integral is read at grid points (the same numbers, bit for bit)."""
    n = integral.shape[0] - 1
    if n % side:
        return _views(integral, side, _WHOLE)
    step = n // side
    f = integral[::step, ::step]
    sums = f[1:, 1:] - f[:-1, 1:] - f[1:, :-1] + f[:-1, :-1]
    return (sums / float(step * step))[None]


def pixel_distances(pairs: Sequence[tuple[Thumbnail, Thumbnail]], rule: PixelRule | None = None
                    ) -> list[tuple[float, bool]]:
    """(distance, cropped) of many pairs of thumbnails; a distance ≤ 1 means the same picture.

    First the whole frames, one after a small brightness/contrast fit onto the other (re-encodes,
    resizes, mild tone changes), all pairs at once; then, if the rule allows, for the pairs that fail but
    come close, crops of up to 8% per side of either image against the other's whole frame, without the
    tone fit (more freedom would match distinct pictures).
    """
    rule = rule or PixelRule()
    if not pairs:
        return []
    x8, x16, y8, y16 = (np.concatenate([getattr(p[i], v) for p in pairs]) for i, v in ((0, "v8"), (0, "v16"),
                                                                                    (1, "v8"), (1, "v16")))
    plain = _distance(x8, x16, y8, y16, rule)
    best = np.minimum(plain, _distance(_tone_fit(x8, y8), _tone_fit(x16, y16), y8, y16, rule))
    out = []
    for (x, y), p, b in zip(pairs, plain.tolist(), best.tolist(), strict=True):
        if b <= 1.0 or not rule.crops or p > CROP_SEARCH_BELOW:
            out.append((b, False))
            continue
        cropped = min(float(_distance(_views(t.integral, 8, _CROPS), _views(t.integral, 16, _CROPS), o.v8, o.v16,
                                      rule).min()) for t, o in ((x, y), (y, x)))
        out.append((cropped, True) if cropped < b else (b, False))
    return out


def pixel_distance(a: np.ndarray | Thumbnail, b: np.ndarray | Thumbnail,
                   rule: PixelRule | None = None) -> tuple[float, bool]:
    """`pixel_distances` of one pair of base thumbnails (or their `Thumbnail`s)."""
    x, y = (t if isinstance(t, Thumbnail) else Thumbnail.of(t) for t in (a, b))
    return pixel_distances([(x, y)], rule)[0]
