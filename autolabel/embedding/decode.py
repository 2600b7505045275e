"""Image bytes → RGB → model input arrays, following the checkpoint's own preprocessor config."""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from autolabel.core.errors import ModelError
from autolabel.core.fileio import InputError, read_regular

ModelInputs = dict[str, np.ndarray]

# transformers' PILImageResampling values are Pillow's own filter numbers.
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


class DecodeError(Exception):
    """An image that cannot be turned into model input; the message is one line for the error row."""


@dataclass(frozen=True)
class Preprocessing:
    """The resize / crop / normalise recipe of a checkpoint (its preprocessor_config.json)."""

    mode: str = "crop"  # "crop": resize + centre crop (CLIP, SigLIP); "patches": SigLIP 2 NaFlex
    do_resize: bool = True
    shortest_edge: int | None = 224
    height: int | None = None
    width: int | None = None
    do_center_crop: bool = True
    crop_height: int = 224
    crop_width: int = 224
    resample: int = 3
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    patch_size: int = 16
    max_num_patches: int = 256

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str = "preprocessor_config.json") -> Preprocessing:
        """Read a transformers image-processor config (CLIP, SigLIP or SigLIP 2 style)."""
        kind = str(config.get("image_processor_type", ""))
        mean = _triple(config.get("image_mean", (0.5, 0.5, 0.5)))
        std = _triple(config.get("image_std", (0.5, 0.5, 0.5)))
        common = {
            "do_resize": bool(config.get("do_resize", True)),
            "resample": int(config.get("resample", 3 if "Siglip2" not in kind else 2)),
            "do_rescale": bool(config.get("do_rescale", True)),
            "rescale_factor": float(config.get("rescale_factor", 1 / 255)),
            "do_normalize": bool(config.get("do_normalize", True)),
            "mean": mean,
            "std": std,
        }
        if "max_num_patches" in config or kind.startswith("Siglip2"):
            return cls(
                mode="patches",
                shortest_edge=None,
                do_center_crop=False,
                patch_size=int(config.get("patch_size", 16)),
                max_num_patches=int(config.get("max_num_patches", 256)),
                **common,
            )
        size = config.get("size", 224)
        shortest = height = width = None
        if isinstance(size, int):
            shortest = size
        elif isinstance(size, dict) and "shortest_edge" in size and "longest_edge" not in size:
            shortest = int(size["shortest_edge"])
        elif isinstance(size, dict) and "height" in size and "width" in size:
            height, width = int(size["height"]), int(size["width"])
        else:
            raise ModelError(f"{where}: unsupported image size setting {size!r}")
        crop = config.get("crop_size", {"height": 224, "width": 224})
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        do_crop = bool(config.get("do_center_crop", not height))
        return cls(
            mode="crop",
            shortest_edge=shortest,
            height=height,
            width=width,
            do_center_crop=do_crop,
            crop_height=int(crop.get("height", 224)),
            crop_width=int(crop.get("width", 224)),
            **common,
        )

    @property
    def input_size(self) -> int:
        """The model's input side in pixels (used to pick the JPEG draft scale)."""
        if self.mode == "patches":
            return self.patch_size * math.isqrt(self.max_num_patches)
        if self.do_center_crop:
            return max(self.crop_height, self.crop_width)
        return self.shortest_edge or max(self.height or 0, self.width or 0)

    def fingerprint(self) -> str:
        """A short hash of every setting and of the decoder: equal fingerprints give equal pixels.

        Pillow's version is part of it: its resampling and its bundled libjpeg change pixels between releases,
        so embeddings cached under one version must not be reused under another.
        """
        import PIL

        blob = json.dumps({**asdict(self), "pillow": PIL.__version__}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> str:
        """One line for people."""
        name = _RESAMPLE_NAMES.get(self.resample, str(self.resample))
        if self.mode == "patches":
            return f"NaFlex ≤{self.max_num_patches} patches of {self.patch_size}px, {name}"
        size = f"short side {self.shortest_edge}" if self.shortest_edge else f"{self.height}×{self.width}"
        crop = f", centre crop {self.crop_height}×{self.crop_width}" if self.do_center_crop else ""
        return f"resize {size} ({name}){crop}"

    def __call__(self, image: Image.Image) -> ModelInputs:
        """An RGB PIL image → the model's input arrays for one image (no batch axis)."""
        if self.mode == "patches":
            return self._patches(image)
        if self.do_resize:
            image = image.resize(self._resized_size(image.width, image.height), resample=self.resample)
        array = np.asarray(image)
        if self.do_center_crop:
            array = _center_crop(array, self.crop_height, self.crop_width)
        return {"pixel_values": self._normalise(array).transpose(2, 0, 1).copy()}

    def _resized_size(self, width: int, height: int) -> tuple[int, int]:
        if self.shortest_edge is None:
            return (int(self.width or width), int(self.height or height))
        # transformers' rule: the short side becomes `shortest_edge`, the long side is truncated with int().
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (self.shortest_edge, new_long) if width <= height else (new_long, self.shortest_edge)

    def _normalise(self, array: np.ndarray) -> np.ndarray:
        out = array.astype(np.float32)
        if self.do_rescale:
            out = out * np.float32(self.rescale_factor)
        if self.do_normalize:
            out = (out - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return out

    def _patches(self, image: Image.Image) -> ModelInputs:
        p = self.patch_size
        height, width = _size_for_max_patches(image.height, image.width, p, self.max_num_patches)
        if self.do_resize:
            image = image.resize((width, height), resample=self.resample)
        array = self._normalise(np.asarray(image))
        h, w = array.shape[0] // p, array.shape[1] // p
        patches = array.reshape(h, p, w, p, 3).transpose(0, 2, 1, 3, 4).reshape(h * w, p * p * 3)
        values = np.zeros((self.max_num_patches, p * p * 3), np.float32)
        values[: h * w] = patches
        mask = np.zeros(self.max_num_patches, np.int32)
        mask[: h * w] = 1
        return {
            "pixel_values": values,
            "pixel_attention_mask": mask,
            "spatial_shapes": np.asarray([h, w], np.int64),
        }


def _triple(value: Any) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3  # type: ignore[return-value]
    a, b, c = (float(v) for v in value)
    return (a, b, c)


def _center_crop(array: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """transformers' centre crop, zero-padding images smaller than the crop."""
    h, w = array.shape[:2]
    if h < crop_h or w < crop_w:
        new_h, new_w = max(h, crop_h), max(w, crop_w)
        padded = np.zeros((new_h, new_w, array.shape[2]), array.dtype)
        top_pad, left_pad = math.ceil((new_h - h) / 2), math.ceil((new_w - w) / 2)
        padded[top_pad : top_pad + h, left_pad : left_pad + w] = array
        top, left = (h - crop_h) // 2 + top_pad, (w - crop_w) // 2 + left_pad
        return padded[max(0, top) : max(0, top) + crop_h, max(0, left) : max(0, left) + crop_w]
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    return array[top : top + crop_h, left : left + crop_w]


def _size_for_max_patches(height: int, width: int, patch: int, max_patches: int) -> tuple[int, int]:
    """SigLIP 2's rule: the largest scale whose patch grid fits max_patches (binary search, as upstream)."""

    def scaled(scale: float, size: int) -> int:
        return int(max(patch, math.ceil(size * scale / patch) * patch))

    lo, hi, eps = 1e-6, 100.0, 1e-5
    while hi - lo >= eps:
        mid = (lo + hi) / 2
        if (scaled(mid, height) / patch) * (scaled(mid, width) / patch) <= max_patches:
            lo = mid
        else:
            hi = mid
    return scaled(lo, height), scaled(lo, width)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB; transparency is composited onto white (as transformers does).

    An image without pixels (0 wide or high) is a DecodeError: it cannot be resized to the model's input.
    """
    if image.width == 0 or image.height == 0:
        raise DecodeError(f"the image has no pixels ({image.width}×{image.height})")
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max(initial=0.0)
        if image.mode == "F" and top <= 1.0:
            values = values * 255.0
        elif top > 255:
            values = values / 257.0  # 16-bit range onto 8 bits
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def open_image(data: bytes, draft_size: int | None = None) -> Image.Image:
    """Decode image bytes: first frame, EXIF orientation applied, RGB. Raises DecodeError."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            if draft_size and image.format == "JPEG":
                # DCT-domain downscale: never below twice the model's input, so the final resize stays exact-ish.
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"image too large, refused as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise DecodeError("not a recognised image (corrupt, or not an image file)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DecodeError(f"truncated or corrupt image data ({text})") from None


def read_bytes(location: str) -> bytes:
    """Read a file or an object-store URL, turning errors into one-line DecodeErrors."""
    from autolabel.core import storage

    if storage.is_url(location):
        try:
            return storage.read_url(location)
        except Exception as exc:  # each backend has its own error types
            raise DecodeError(storage.explain(exc)) from None
    try:
        return read_regular(location)
    except InputError as exc:
        raise DecodeError(exc.strerror) from None


def stack(inputs: list[ModelInputs]) -> ModelInputs:
    """Per-image input dicts → one batch dict."""
    return {key: np.stack([item[key] for item in inputs]) for key in inputs[0]}
