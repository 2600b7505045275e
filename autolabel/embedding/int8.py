"""`--precision int8`: the model's towers exported to ONNX once per weights, dynamically quantised, run by ONNX Runtime.

The export is made from the local checkpoint (never the Hub), checked against fp32 on a fixed sample (embedding
cosine; refused below PARITY_FLOOR) and kept in the cache folder under the weights' fingerprint, so later runs
only open it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autolabel.core.errors import ModelError
from autolabel.embedding.decode import ModelInputs, stack

FORMAT = 1  # bump when the export changes, so older exports are not reused
OPSET = 17
# Dynamic int8 on ViT-B/32 keeps embedding cosine ≥ 0.9998 vs fp32 (issue 23's measurement); a export that
# falls below 0.99 has gone wrong (a broken graph, an op quantised badly), not merely lost precision: at cosine
# 0.99 two embeddings are ~8° apart, as far as many classes' prompts are from each other.
PARITY_FLOOR = 0.99
_SAMPLE_PROMPTS = ("a photo of a cat.", "a drawing of a red circle.", "a picture of the blue square.",
                   "a dog on a sofa", "an aerial photo of a city at night", "a close-up of a yellow flower")


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def sample_images(preprocessing: Any, n: int = 8, seed: int = 0) -> ModelInputs:
    """A fixed, varied sample of model inputs: smooth colour fields with shapes and noise (no files needed)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    inputs = []
    for _ in range(n):
        size = 256
        ramp = np.linspace(0, 1, size, dtype=np.float32)
        base = rng.random(3, dtype=np.float32)[None, None] * ramp[:, None, None] + rng.random(3, dtype=np.float32)
        pixels = np.clip(base / base.max() * 255 + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(3):
            x, y = rng.integers(0, size - 64, 2)
            w, h = rng.integers(24, 96, 2)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([int(x), int(y), int(x + w), int(y + h)], fill=fill)
        inputs.append(preprocessing(image))
    return stack(inputs)


@dataclass
class Int8Model:
    """A ZeroShotModel's twin whose image and text towers run as int8 ONNX graphs (same members, same outputs)."""

    base: Any  # the fp32 ZeroShotModel: tokenizer, preprocessing, logit scale and bias, vocabulary
    image: Any  # onnxruntime.InferenceSession
    text: Any
    text_inputs: tuple[str, ...]
    parity: dict[str, Any]

    @classmethod
    def build(cls, base: Any, folder: Path | None, warn: Callable[[str], None] | None = None) -> Int8Model:
        """Open the cached export of these weights, making (and checking) it first when there is none; a cached
        export that cannot be read (a damaged file) is made again, saying so through `warn`."""
        scratch = None if folder is not None else Path(tempfile.mkdtemp(prefix="autolabel-int8-"))  # --no-cache
        where = (folder or scratch) / f"{base.fingerprint}-v{FORMAT}"  # type: ignore[operator]
        try:
            if (where / "parity.json").is_file():
                try:
                    return cls(base, *_open(where))
                except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, …)
                    reason = " ".join(str(exc).split())[:120] or type(exc).__name__
                    if warn is not None:
                        warn(f"the int8 export in {where} cannot be read ({reason}); exporting it again")
                    _discard(where)
            export(base, where)
            return cls(base, *_open(where))
        finally:
            if scratch is not None:  # the sessions hold the graphs in memory
                shutil.rmtree(scratch, ignore_errors=True)

    # the members the stages use ------------------------------------------------------------------------
    name = property(lambda self: self.base.name)
    fingerprint = property(lambda self: self.base.fingerprint)
    preprocessing = property(lambda self: self.base.preprocessing)
    model_type = property(lambda self: self.base.model_type)
    context_length = property(lambda self: self.base.context_length)
    logit_scale = property(lambda self: self.base.logit_scale)
    logit_bias = property(lambda self: self.base.logit_bias)
    device = property(lambda self: "cpu")
    precision = property(lambda self: "int8")

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """How many tokens each prompt takes, untruncated."""
        return self.base.token_counts(prompts)

    def too_long(self, prompts: Sequence[str]) -> list[str]:
        """Prompts whose tokens exceed the model's text context."""
        return self.base.too_long(prompts)

    def vocabulary(self) -> list[str]:
        """The tokenizer's tokens in id order."""
        return self.base.vocabulary()

    def encode_images(self, batch: ModelInputs) -> np.ndarray:
        """L2-normalised float32 embeddings of a stacked batch of decoded images."""
        pixels = np.ascontiguousarray(batch["pixel_values"], dtype=np.float32)
        return _normalise(self.image.run(None, {"pixel_values": pixels})[0])

    def encode_text(self, prompts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised float32 embeddings of the prompts."""
        chunks = []
        for start in range(0, len(prompts), batch_size):
            tokens = _tokens(self.base, prompts[start:start + batch_size])
            chunks.append(_normalise(self.text.run(None, {k: tokens[k] for k in self.text_inputs})[0]))
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)

    def describe(self) -> dict[str, Any]:
        """Run-metadata view: the fp32 model's, at int8, with the export's parity check."""
        return {**self.base.describe(), "device": "cpu", "precision": "int8", "int8": dict(self.parity)}


def _tokens(base: Any, prompts: Sequence[str]) -> dict[str, np.ndarray]:
    out = base.tokenizer(list(prompts), padding="max_length" if base.pads_to_max_length else True, truncation=True,
                         max_length=base.context_length, return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items() if k in ("input_ids", "attention_mask")}


def _open(where: Path) -> tuple[Any, Any, tuple[str, ...], dict[str, Any]]:
    """The image and text sessions of an export, the text graph's input names, and its parity check."""
    import onnxruntime as ort

    parity = json.loads((where / "parity.json").read_text())
    if not isinstance(parity, dict) or not all(isinstance(parity.get(k), (int, float))
                                               for k in ("image_cosine_min", "text_cosine_min")):
        raise ValueError("parity.json is not the export's parity check")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    image = ort.InferenceSession(str(where / "image-int8.onnx"), options, providers=["CPUExecutionProvider"])
    text = ort.InferenceSession(str(where / "text-int8.onnx"), options, providers=["CPUExecutionProvider"])
    return image, text, tuple(i.name for i in text.get_inputs()), parity


def _discard(where: Path) -> None:
    """Move a damaged export out of the way (renamed first: a run reading it keeps its open files) and delete it."""
    aside = where.parent / f".broken-{where.name}-{os.getpid()}"
    os.replace(where, aside)
    shutil.rmtree(aside, ignore_errors=True)


def export(base: Any, where: Path) -> None:
    """Export both towers, quantise their weights to int8, check them against fp32, and keep them in `where`."""
    where.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=where.parent))
    try:
        images = sample_images(base.preprocessing)
        tokens = _tokens(base, _SAMPLE_PROMPTS)
        _export_tower(base.model, "get_image_features", {"pixel_values": images["pixel_values"]},
                      work / "image.onnx", {"pixel_values": {0: "batch"}})
        _export_tower(base.model, "get_text_features", tokens, work / "text.onnx",
                      {k: {0: "batch", 1: "tokens"} for k in tokens})
        _quantise(work / "image.onnx", work / "image-int8.onnx")
        _quantise(work / "text.onnx", work / "text-int8.onnx")
        parity = _parity(base, work, images, tokens)
        if min(parity["image_cosine_min"], parity["text_cosine_min"]) < PARITY_FLOOR:
            raise ModelError(
                f"--precision int8: the int8 export of '{base.name}' agrees with fp32 only to embedding cosine "
                f"{min(parity['image_cosine_min'], parity['text_cosine_min']):.4f} (< {PARITY_FLOOR}); "
                "use --precision fp32 or bf16 with this model")
        for name in ("image.onnx", "text.onnx"):
            (work / name).unlink()
        (work / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
        if where.exists():  # another run finished the same export first
            return
        os.replace(work, where)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_tower(model: Any, method: str, inputs: dict[str, np.ndarray], path: Path,
                  dynamic: dict[str, dict[int, str]]) -> None:
    import torch

    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            out = getattr(self.model, method)(**dict(zip(inputs, args, strict=True)))
            return out if isinstance(out, torch.Tensor) else out.pooler_output

    tensors = tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in inputs.values())
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tower().eval(), tensors, str(path), input_names=list(inputs), output_names=["embedding"],
                          dynamic_axes={**dynamic, "embedding": {0: "batch"}}, opset_version=OPSET, dynamo=False)


def _quantise(source: Path, target: Path) -> None:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its "consider pre-processing" note
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def _parity(base: Any, work: Path, images: ModelInputs, tokens: dict[str, np.ndarray]) -> dict[str, Any]:
    import onnxruntime as ort

    image = ort.InferenceSession(str(work / "image-int8.onnx"), providers=["CPUExecutionProvider"])
    text = ort.InferenceSession(str(work / "text-int8.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in text.get_inputs()]
    got_images = _normalise(image.run(None, {"pixel_values": images["pixel_values"].astype(np.float32)})[0])
    got_texts = _normalise(text.run(None, {k: tokens[k] for k in names})[0])
    want_images = np.asarray(base.encode_images(images))
    want_texts = np.asarray(base.encode_text(list(_SAMPLE_PROMPTS)))
    image_cos = (got_images * want_images).sum(axis=1)
    text_cos = (got_texts * want_texts).sum(axis=1)
    return {"format": FORMAT, "runtime": "onnxruntime",
            "quantisation": "dynamic int8 weights (QInt8), uint8 activations",
            "sample": {"images": len(image_cos), "prompts": len(text_cos)},
            "image_cosine_min": round(float(image_cos.min()), 6), "text_cosine_min": round(float(text_cos.min()), 6),
            "floor": PARITY_FLOOR}
