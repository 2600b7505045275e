"""The Python API: `autolabel.Labeler` gives the CLI's numbers, quietly, with exceptions instead of exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import autolabel
from autolabel.cli import main
from autolabel.table.schema import OUTPUT_SCHEMA


def test_label_equals_the_cli_run_and_writes_nothing_to_stderr(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                              capfd) -> None:
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out", str(out),
                                       "--model", str(tiny_clip), "-q"])
    assert result.exit_code == 0, result.output
    cli = pd.read_parquet(out)
    capfd.readouterr()
    labeler = autolabel.Labeler(model=str(tiny_clip), spec=labels_yaml)
    frame = labeler.label([image_folder / p for p in cli.path])
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert list(frame.columns) == OUTPUT_SCHEMA.names
    assert list(frame.path) == [str(image_folder / p) for p in cli.path]
    assert list(frame.label) == list(cli.label) and list(frame.status) == list(cli.status)
    np.testing.assert_allclose(frame.confidence, cli.confidence, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.stack(frame.top_scores), np.stack(cli.top_scores), rtol=0, atol=1e-6)


def test_pil_images_and_inline_classes(tmp_path, tiny_clip) -> None:
    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog", "bird"],
                                templates=["a photo of a {label}."], threshold=0.9, cache=False)
    pictures = [Image.new("RGB", (40, 30), color) for color in ("red", "green", "blue")]
    pictures[1].save(tmp_path / "green.png")
    frame = labeler.label([pictures[0], tmp_path / "green.png", pictures[2]])
    assert list(frame.path) == ["<image 0>", str(tmp_path / "green.png"), "<image 2>"]
    assert set(frame.label) <= {"cat", "dog", "bird"}
    same = labeler.label([pictures[1]])
    assert same.confidence[0] == pytest.approx(frame.confidence[1], abs=1e-6)  # a PNG decodes to these pixels
    assert all(s == "review" for s, c in zip(frame.status, frame.confidence, strict=True) if c < 0.9)


def test_a_one_class_spec_raises_autolabel_error(tiny_clip) -> None:
    with pytest.raises(autolabel.AutolabelError, match="needs a list of at least two classes"):
        autolabel.Labeler(model=str(tiny_clip), classes=["cat"])


def test_spec_and_classes_together_are_refused(labels_yaml, tiny_clip) -> None:
    with pytest.raises(autolabel.UsageError, match="either spec= .* or classes="):
        autolabel.Labeler(model=str(tiny_clip), spec=labels_yaml, classes=["a", "b"])


def test_something_that_is_not_an_image_is_refused(tiny_clip) -> None:
    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog"], cache=False)
    with pytest.raises(autolabel.UsageError, match=r"images\[1\]: expected a path or a PIL image, got int"):
        labeler.label(["x.png", 3])


def test_a_broken_file_is_an_error_row_not_an_exception(tmp_path, tiny_clip) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog"], cache=False)
    frame = labeler.label([tmp_path / "broken.jpg"])
    assert frame.status[0] == "error" and "not a recognised image" in frame.error[0]


def test_label_to_is_the_cli_run_and_the_model_loads_once(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                           monkeypatch) -> None:
    from autolabel.embedding.model import ZeroShotModel

    loads = []
    real = ZeroShotModel.load.__func__
    monkeypatch.setattr(ZeroShotModel, "load", classmethod(lambda cls, *a, **k: loads.append(a) or real(cls, *a, **k)))
    labeler = autolabel.Labeler(model=str(tiny_clip), spec=labels_yaml)
    result = labeler.label_to(image_folder, tmp_path / "api.parquet", top_k=2)
    labeler.label([image_folder / "c.png"])
    assert len(loads) == 1
    CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                              str(tmp_path / "cli.parquet"), "--model", str(tiny_clip), "--top-k", "2", "-q"])
    pd.testing.assert_frame_equal(pd.read_parquet(result.out), pd.read_parquet(tmp_path / "cli.parquet"))
    assert result.summary.images == 6 and result.summary.out == str(tmp_path / "api.parquet")


def test_import_autolabel_does_not_import_torch() -> None:
    code = ("import sys, autolabel\n"
            "assert callable(autolabel.Labeler) and issubclass(autolabel.SpecError, autolabel.AutolabelError)\n"
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr


def test_labeler_learns_from_examples_and_keeps_their_human_labels(tmp_path, image_folder, tiny_clip) -> None:
    table = tmp_path / "reviewed.csv"
    pd.DataFrame({"path": [str(image_folder / "c.png")], "reviewed_label": ["dog"]}).to_csv(table, index=False)
    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog", "bird"], examples=[table], cache=False)
    frame = labeler.label([image_folder / "c.png", image_folder / "a/1.jpg"])
    assert frame.status[0] == "reviewed" and frame.label[0] == "dog"
    assert frame.status[1] in ("accepted", "review")
    assert labeler.learned.describe()["examples"] == 1


def test_label_to_writes_nothing_to_stderr_even_for_skipped_images(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                                   capfd) -> None:
    (image_folder / "broken.png").write_bytes(b"nope")
    labeler = autolabel.Labeler(model=str(tiny_clip), spec=labels_yaml, cache=False)
    capfd.readouterr()
    result = labeler.label_to(image_folder, tmp_path / "o.parquet")
    assert capfd.readouterr().err == ""
    assert result.summary.status["error"] == 1


def test_one_path_or_one_picture_is_one_image(tmp_path, tiny_clip) -> None:
    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog"], cache=False)
    picture = Image.new("RGB", (40, 30), "red")
    picture.save(tmp_path / "red.png")
    by_path, by_picture = labeler.label(str(tmp_path / "red.png")), labeler.label(picture)
    assert list(by_path.path) == [str(tmp_path / "red.png")] and list(by_picture.path) == ["<image 0>"]
    assert by_path.confidence[0] == pytest.approx(by_picture.confidence[0], abs=1e-6)


def test_label_to_refuses_what_belongs_to_the_labeler(tmp_path, image_folder, tiny_clip) -> None:
    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog"], cache=False)
    with pytest.raises(autolabel.UsageError) as info:
        labeler.label_to(image_folder, tmp_path / "o.parquet", device="cuda", labels="x.yaml")
    assert str(info.value) == ("label_to: device, labels belong to the Labeler (its model is loaded); make another "
                               "Labeler to change them")
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(("given", "wanted"), [
    ({"top_k": "3"}, "top_k= takes an int, not str '3'"),
    ({"top_k": True}, "top_k= takes an int, not bool 'True'"),
    ({"workers": "2"}, "workers= takes an int, not str '2'"),
    ({"batch_size": 1.5}, "batch_size= takes an int, not float '1.5'"),
    ({"threshold": "0.5"}, "threshold= takes a number, not str '0.5'"),
    ({"examples": 3}, "examples= takes a list of table paths, not int '3'"),
    ({"examples": [3]}, "examples= takes a list of table paths, not one holding int 3"),
    ({"model": 5}, "model= takes a Hub id or a checkpoint folder (str), not int '5'"),
    ({"cache_dir": 3}, "cache_dir= takes a folder path, not int '3'"),
    ({"multi_label": "no"}, "multi_label= takes True or False, not str 'no'"),
    ({"cache": "no"}, "cache= takes True or False, not str 'no'"),
    ({"device": None}, "device= takes a str such as 'auto' or 'cpu', not NoneType 'None'"),
    ({"classes": [1, 2]}, "classes= takes a list of class names (str) or class mappings, not one holding int 1"),
    ({"templates": [1]}, "templates= takes a list of prompt templates (str) or a shipped set's name, not one "
                         "holding int 1"),
])
def test_an_argument_of_the_wrong_type_is_a_usage_error_at_construction(tmp_path, monkeypatch, given,
                                                                        wanted) -> None:
    monkeypatch.chdir(tmp_path)
    arguments = {"classes": ["cat", "dog"], "cache": False, **given}
    with pytest.raises(autolabel.UsageError) as info:
        autolabel.Labeler(**arguments)
    assert str(info.value) == wanted
    assert list(tmp_path.iterdir()) == []  # no folder named `3`


def test_model_may_be_a_path(tiny_clip) -> None:
    labeler = autolabel.Labeler(model=Path(tiny_clip), classes=["cat", "dog"], cache=False)
    assert labeler.model_config.model == str(tiny_clip) and labeler.model.name == str(tiny_clip)
