"""Preprocessing equals transformers' image processors; every awkward image mode decodes correctly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autolabel.embedding.decode import DecodeError, Preprocessing, open_image, read_bytes, to_rgb

from .conftest import noise_image

SIZES = [(640, 480), (33, 97), (224, 224), (31, 20), (500, 333), (97, 33)]


def _processors() -> list:
    from transformers import CLIPImageProcessor, SiglipImageProcessor
    from transformers.models.siglip2 import Siglip2ImageProcessor

    return [
        CLIPImageProcessor(),
        CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 30}),
        SiglipImageProcessor(),
        SiglipImageProcessor(size={"height": 32, "width": 48}, resample=2),
        Siglip2ImageProcessor(patch_size=8, max_num_patches=64),
    ]


@pytest.mark.parametrize("index", range(5))
def test_preprocessing_equals_transformers_processor(index: int) -> None:
    processor = _processors()[index]
    ours = Preprocessing.from_config(processor.to_dict())
    for seed, size in enumerate(SIZES):
        image = noise_image(seed, size)
        reference = processor(images=image, return_tensors="np")
        mine = ours(image)
        assert set(mine) <= set(reference.keys())
        for key, value in mine.items():
            assert value.shape == reference[key][0].shape, key
            assert float(np.abs(reference[key][0] - value).max()) <= 1e-4, (key, size)


def test_preprocessing_fingerprint_changes_with_settings() -> None:
    a = Preprocessing.from_config({"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}})
    b = Preprocessing.from_config({"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}})
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == Preprocessing.from_config({"size": 224, "crop_size": 224}).fingerprint()


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def test_bad_bytes_raise_one_line_errors() -> None:
    good = _encode(noise_image(1, (64, 64)), "JPEG")
    cases = {
        b"": "empty file (0 bytes)",
        b"this is text, not an image": "not a recognised image",
        good[: len(good) // 2]: "truncated or corrupt image data",
        good[:20] + bytes(200): "",
    }
    for data, message in cases.items():
        with pytest.raises(DecodeError) as info:
            open_image(data)
        assert message in str(info.value)
        assert "\n" not in str(info.value)


def test_read_bytes_errors(tmp_path, monkeypatch) -> None:
    with pytest.raises(DecodeError, match="file not found"):
        read_bytes(str(tmp_path / "missing.jpg"))
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(DecodeError, match="is a directory"):
        read_bytes(str(tmp_path / "dir.jpg"))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    (tmp_path / "x.jpg").write_bytes(b"data")
    monkeypatch.setattr("os.open", denied)
    with pytest.raises(DecodeError, match="permission denied"):
        read_bytes(str(tmp_path / "x.jpg"))


def test_decompression_bomb_is_refused(monkeypatch) -> None:
    data = _encode(noise_image(1, (100, 100)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DecodeError, match="decompression bomb"):
        open_image(data)


def test_modes_convert_to_rgb() -> None:
    rgb = np.asarray(noise_image(3, (20, 10)))
    cmyk = Image.fromarray(rgb).convert("CMYK")
    assert open_image(_encode(cmyk, "JPEG")).mode == "RGB"
    # Palette with a transparent index: transparent pixels become white, as transformers composites them.
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    out = open_image(_encode(pal, "PNG", transparency=0))
    assert out.getpixel((1, 1)) == (255, 255, 255) and out.getpixel((0, 0)) == (0, 0, 255)
    la = Image.new("LA", (4, 4), (10, 255))
    assert open_image(_encode(la, "PNG")).getpixel((0, 0)) == (10, 10, 10)
    sixteen = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert open_image(_encode(sixteen, "PNG")).getpixel((0, 0)) == (255, 255, 255)
    mid = Image.fromarray(np.full((4, 4), 32896, np.uint16))
    assert open_image(_encode(mid, "PNG")).getpixel((0, 0)) == (128, 128, 128)
    assert to_rgb(Image.new("F", (2, 2), 0.5)).getpixel((0, 0)) == (128, 128, 128)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert open_image(buf.getvalue()).getpixel((4, 4)) == (255, 0, 0)


def test_exif_rotation_applied_before_preprocessing() -> None:
    upright = noise_image(5, (30, 60))
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # the sensor's view; Orientation=8 undoes it
    exif = Image.Exif()
    exif[0x0112] = 8
    data = _encode(stored, "PNG", exif=exif)
    decoded = open_image(data)
    assert decoded.size == upright.size
    assert np.array_equal(np.asarray(decoded), np.asarray(upright))


def test_jpeg_draft_keeps_twice_the_model_size() -> None:
    data = _encode(noise_image(7, (3000, 2000)), "JPEG")
    drafted = open_image(data, draft_size=448)
    assert min(drafted.size) >= 448 and drafted.size[0] < 3000
    assert open_image(data).size == (3000, 2000)


def test_the_fingerprint_changes_with_the_pillow_version(monkeypatch) -> None:
    import PIL

    before = Preprocessing.from_config({"size": 224, "crop_size": 224}).fingerprint()
    monkeypatch.setattr(PIL, "__version__", "0.0.1")
    assert Preprocessing.from_config({"size": 224, "crop_size": 224}).fingerprint() != before
