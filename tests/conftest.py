"""Shared fixtures: tiny random-init CLIP and SigLIP checkpoints saved to disk, sample images."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
# Caches of the whole session (every fixture, whatever its scope, and every subprocess): never the user's.
SESSION_CACHES = Path(tempfile.mkdtemp(prefix="autolabel-tests-"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ["AUTOLABEL_CACHE_DIR"] = str(SESSION_CACHES / "autolabel")
    os.environ["XDG_CACHE_HOME"] = str(SESSION_CACHES / "xdg")
    # `--precision auto` is bf16 on CPUs with native bf16: the suite's exact numbers are fp32's on every machine
    # (tests/test_precision.py fakes the detection to test bf16).
    os.environ["AUTOLABEL_CPU_BF16"] = "0"


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(SESSION_CACHES, ignore_errors=True)

TINY_SHAPES = ROOT / "examples" / "tiny-shapes"
sys.path.insert(0, str(TINY_SHAPES))

WORDS = ["a", "an", "the", "photo", "of", "picture", "drawing", "cat", "dog", "bird", "car", "tree", "red", "green",
         "blue", "this", "is"]


def _tower(vocab_size: int, context: int) -> tuple[dict, dict]:
    text = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=context,
    )
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                  num_hidden_layers=2, num_attention_heads=2)
    return text, vision


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random-init CLIP with a word-level tokenizer and a CLIP-style preprocessor (short side 40, crop 32)."""
    import torch
    from tokenizer import build_tokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok = build_tokenizer(WORDS)
    text, vision = _tower(len(tok), 16)
    text.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def siglip_tokenizer(folder: Path):  # -> transformers.SiglipTokenizer
    """SigLIP's own SentencePiece tokenizer, trained on the fixture words (the real SigLIP code path)."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))) * 20)
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "sp"), vocab_size=36,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    return SiglipTokenizer(vocab_file=str(folder / "sp.model"))


def save_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    """A random-init SigLIP (with logit_bias), its SentencePiece tokenizer, a SigLIP preprocessor (square resize)."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    tok = siglip_tokenizer(folder.parent / f"{folder.name}-spm")
    text, vision = _tower(len(tok), 64)
    text.update(projection_size=32, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
    with torch.no_grad():
        model.logit_bias.fill_(-3.0)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip"))


def noise_image(seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A deterministic random image."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(array[..., 0] if channels == 1 else array, mode)


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    """Six images in nested folders (JPEG and PNG), plus files that must be ignored."""
    root = tmp_path / "images"
    for i, rel in enumerate(["b/2.png", "a/1.jpg", "a/sub/3.JPG", "c.png", "d.webp", "b/1.png"]):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        noise_image(i, (40 + 8 * i, 36)).save(path)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    noise_image(99).save(root / ".hidden" / "x.png")
    noise_image(98).save(root / ".dot.png")
    return root


LABELS_YAML = """\
templates: ["a photo of a {label}.", "a drawing of the {label}."]
classes:
  - cat
  - name: dog
    synonyms: [red dog]
    prompts: ["a picture of a green tree"]
  - name: bird
    threshold: 0.2
threshold: 0.4
"""


@pytest.fixture()
def labels_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "labels.yaml"
    path.write_text(LABELS_YAML)
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own embedding cache, never the user's."""
    monkeypatch.setenv("AUTOLABEL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def save_tiny_siglip2(folder: Path, seed: int = 0) -> Path:
    """A random-init SigLIP 2 (NaFlex patches) with a SigLIP 2 preprocessor (patch 8, at most 16 patches)."""
    import torch
    from tokenizer import build_tokenizer
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model

    tok = build_tokenizer(WORDS)
    text, vision = _tower(len(tok), 64)
    text.update(projection_size=32, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id)
    vision.update(num_patches=16)
    vision.pop("image_size")
    torch.manual_seed(seed)
    model = Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_siglip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_siglip2(tmp_path_factory.mktemp("tiny-siglip2"))


def interrupt_on_batch(monkeypatch: pytest.MonkeyPatch, n: int):
    """Make the n-th image batch raise KeyboardInterrupt (as Ctrl-C would); returns the real encode_images."""
    from autolabel.embedding.model import ZeroShotModel

    real = ZeroShotModel.encode_images
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(ZeroShotModel, "encode_images", interrupted)
    return real


def finishes(job, seconds: float = 10):
    """What `job` returned or raised, failing the test if it is still blocked after `seconds` (a FIFO read)."""
    outcome: list = []

    def attempt() -> None:
        try:
            outcome.append(job())
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=seconds)
    assert not worker.is_alive(), "blocked"
    return outcome[0]


SLOW_MODEL = Path(__file__).resolve().parent / "slowmodel"


def slow_env(seconds: float, **extra: str) -> dict[str, str]:
    """The environment for a subprocess whose model (in every process it starts, Ray's too) is slow per batch."""
    env = dict(os.environ, AUTOLABEL_TEST_SLOW_ENCODE=str(seconds), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(SLOW_MODEL), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


COLOR_PAIRS_SPEC = """\
model: {model}
templates: ["a picture of something {{label}}.", "a {{label}} object.", "one {{label}} thing."]
classes: [red, green, blue, yellow]
multi_label: true
"""


def label_shape_pairs(root: Path, n: int, seed: int, out: Path, spec: Path | None = None) -> Path:
    """Draw n two-shape images (make_images.make_pairs) under root and label them with the multi-label colour
    spec and the tiny-shapes model; returns the labels table (`colors`: the truth, a JSON array)."""
    from click.testing import CliRunner
    from make_images import make_pairs

    from autolabel.cli import main

    manifest = make_pairs(root, n=n, seed=seed)
    if spec is None:
        spec = root / "colors-multi.yaml"
        spec.write_text(COLOR_PAIRS_SPEC.format(model=TINY_SHAPES / "model"))
    result = CliRunner().invoke(main, ["run", str(manifest), "--labels", str(spec), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def shape_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 labelled two-shape images: a multi-label Parquet table from a real run of the tiny-shapes model."""
    root = tmp_path_factory.mktemp("shape-pairs")
    return label_shape_pairs(root / "images", 160, 7, root / "labels.parquet")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Label Studio takes a minute to start: when its tests are selected, start it now (see tests/apps.py)."""
    from .apps import start_label_studio_early

    start_label_studio_early(session.items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    from .apps import stop_early_label_studio

    stop_early_label_studio()
