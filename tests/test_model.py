"""ZeroShotModel loading and the equivalence with transformers' zero-shot-image-classification pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.core.errors import ModelError, UsageError
from autolabel.embedding.model import ZeroShotModel, pick_device, pick_dtype

from .conftest import noise_image

CLASSES = ["cat", "dog", "bird", "red car", "green tree"]


def _images(folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for i, size in enumerate([(64, 48), (48, 64), (40, 40), (100, 37), (33, 90), (52, 52)]):
        path = folder / f"{i}.png"
        noise_image(10 + i, size).save(path)
        paths.append(path)
    return paths


def _ours(tmp_path: Path, model: Path, folder: Path) -> pd.DataFrame:
    spec = tmp_path / "spec.yaml"
    spec.write_text("templates: ['a photo of a {}.']\nclasses: [" + ", ".join(CLASSES) + "]\n")
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(main, ["run", str(folder), "--labels", str(spec), "--out", str(out),
                                       "--model", str(model), "--top-k", str(len(CLASSES)), "-q"])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out)


def _pipeline_scores(model: Path, paths: list[Path]) -> list[dict[str, float]]:
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=str(model), device="cpu")
    out = classifier([str(p) for p in paths], candidate_labels=CLASSES, hypothesis_template="a photo of a {}.")
    return [{r["label"]: r["score"] for r in rows} for rows in out]


def test_clip_probabilities_equal_transformers_pipeline(tmp_path: Path, tiny_clip: Path) -> None:
    paths = _images(tmp_path / "imgs")
    ours = _ours(tmp_path, tiny_clip, tmp_path / "imgs")
    theirs = _pipeline_scores(tiny_clip, paths)
    for row, ref in zip(ours.itertuples(), theirs, strict=True):
        mine = dict(zip(row.top_labels, row.top_scores, strict=True))
        assert max(abs(mine[c] - ref[c]) for c in CLASSES) <= 1e-4
        assert row.label == max(ref, key=ref.get)


@pytest.mark.parametrize("which", ["tiny_siglip", "tiny_siglip2"])
def test_siglip_softmax_equals_pipeline_logits(tmp_path: Path, which: str, request: pytest.FixtureRequest) -> None:
    """The pipeline reports sigmoid(logit) for SigLIP (1 and 2); softmax over its logits must equal ours."""
    model = request.getfixturevalue(which)
    paths = _images(tmp_path / "imgs")
    ours = _ours(tmp_path, model, tmp_path / "imgs")
    theirs = _pipeline_scores(model, paths)
    for row, ref in zip(ours.itertuples(), theirs, strict=True):
        logits = np.array([np.log(ref[c] / (1 - ref[c])) for c in CLASSES])
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        mine = dict(zip(row.top_labels, row.top_scores, strict=True))
        assert max(abs(mine[c] - p) for c, p in zip(CLASSES, probs, strict=True)) <= 1e-4


def test_model_describes_itself(tiny_clip: Path, tiny_siglip: Path) -> None:
    clip = ZeroShotModel.load(str(tiny_clip), device="cpu")
    info = clip.describe()
    assert info["type"] == "clip" and info["precision"] == "float32" and info["logit_bias"] == 0.0
    assert len(clip.fingerprint) == 16 and clip.fingerprint == ZeroShotModel.load(str(tiny_clip)).fingerprint
    siglip = ZeroShotModel.load(str(tiny_siglip))
    assert siglip.pads_to_max_length and siglip.logit_bias == pytest.approx(-3.0)
    emb = clip.encode_text(["a photo of a cat.", "a dog"])
    assert emb.shape == (2, 16)
    np.testing.assert_allclose(emb.norm(dim=-1).numpy(), 1.0, atol=1e-6)
    assert clip.too_long(["a " * 40, "a cat"]) == ["a " * 40]


def test_missing_model_and_pickle_only_checkpoint(tmp_path: Path, tiny_clip: Path, monkeypatch) -> None:
    with pytest.raises(ModelError, match="no such folder"):
        ZeroShotModel.load(str(tmp_path / "nothing-here"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        ZeroShotModel.load("autolabel-tests/not-a-real-model")
    message = str(info.value)
    assert "not-a-real-model" in message and "--model PATH" in message and "HF_HUB_OFFLINE" in message
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in tiny_clip.iterdir():
        if f.suffix != ".safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded, ever")
    with pytest.raises(ModelError, match="no safetensors weights"):
        ZeroShotModel.load(str(pickled))


def test_device_and_precision_choice() -> None:
    import torch

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match=r"^--device cuda: CUDA is not available here; use --device cpu or auto$"):
            pick_device("cuda")


def test_hub_id_loads_offline_from_the_hf_cache(tmp_path: Path, tiny_clip: Path, monkeypatch) -> None:
    """A hub id already in the HF cache loads with HF_HUB_OFFLINE=1, and its commit is the fingerprint."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--autolabel-test--tiny-clip"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in tiny_clip.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    model = ZeroShotModel.load("autolabel-test/tiny-clip")
    assert model.fingerprint == commit
    assert model.encode_text(["a cat"]).shape == (1, 16)
