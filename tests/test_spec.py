"""Label-spec parsing and every validation error (through the library and the CLI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.core.errors import SpecError
from autolabel.core.prompts import template_sets
from autolabel.core.spec import load_spec, parse_spec

from .conftest import finishes


def test_full_spec_parses(labels_yaml: Path) -> None:
    spec = load_spec(labels_yaml)
    assert spec.class_names == ["cat", "dog", "bird"]
    assert spec.templates == ("a photo of a {label}.", "a drawing of the {label}.")
    assert spec.thresholds() == [0.4, 0.4, 0.2]
    dog = spec.classes[1]
    assert spec.prompts_for(dog) == [
        "a photo of a dog.", "a drawing of the dog.",
        "a photo of a red dog.", "a drawing of the red dog.",
        "a picture of a green tree",
    ]
    assert spec.with_threshold(0.9).thresholds() == [0.9, 0.9, 0.2]


def test_default_and_named_template_sets() -> None:
    spec = parse_spec({"classes": ["a", "b"]})
    assert spec.templates == template_sets()["default"].templates
    assert 10 <= len(spec.templates) <= 20
    assert parse_spec({"classes": ["a", "b"], "templates": "imagenet-7"}).templates[0] == "itap of a {label}."
    assert parse_spec({"classes": ["a", "b"], "templates": ["{} photo"]}).prompts_for(
        parse_spec({"classes": ["a", "b"]}).classes[0]) == ["a photo"]


def test_shipped_example_specs_are_valid() -> None:
    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "prompts" / "examples").glob("*.yaml")):
        assert len(load_spec(path).classes) >= 2
    pets = load_spec(root / "prompts" / "examples" / "pets.yaml")
    assert "a photo of a {label}, a type of pet." in pets.templates


BAD = [
    ("classes: [cat]\n", "classes: needs a list of at least two classes, got 1"),
    ("templates: ['a photo']\nclasses: [a, b]\n", "templates[0]: template 'a photo' has no {label} placeholder"),
    ("classes: [a, b]\nthreshhold: 0.3\n", "unknown key 'threshhold'; did you mean 'threshold'?"),
    ("classes: [a, {name: b, synonym: [c]}]\n", "classes[1] (b): unknown key 'synonym'; did you mean 'synonyms'?"),
    ("classes: [a, a]\n", "'a' is already used by class 'a'"),
    ("classes: [a, {name: b, synonyms: [a]}]\n", "'a' is already used by class 'a'"),
    ("classes: [a, b]\nthreshold: 1.5\n", "threshold: must be between 0 and 1, got 1.5"),
    ("classes: [a, {name: b, threshold: high}]\n", "classes[1] (b): threshold: must be a number between 0 and 1"),
    ("classes: [a, {synonyms: [x]}]\n", "classes[1]: needs a non-empty 'name'"),
    ("classes: [a, b]\ntemplates: nosuchset\n", "templates: no shipped template set named 'nosuchset'"),
    ("classes: [a, b]\ntemplates: []\n", "templates: is empty"),
    ("classes: [a, b\n", "invalid YAML at line"),
    ("- a\n- b\n", "must be a YAML mapping"),
    ("classes: [a, b]\nmin_margin: -1\n", "min_margin: must be between 0 and 1"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_specs_fail_with_precise_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("text", "message"), BAD[:4])
def test_bad_spec_through_cli_exits_2_without_traceback(tmp_path: Path, image_folder: Path, text: str,
                                                        message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(path), "--out",
                                       str(tmp_path / "o.parquet")])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.parquet").exists()


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="label spec not found"):
        load_spec(tmp_path / "nope.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ('classes: [a, "b\\0c"]\n', "classes[1]: name: 'b\\x00c' contains a control character (U+0000); use plain text"),
    ('classes: [a, {name: "b\\nc"}]\n',
     "classes[1]: name: 'b\\nc' contains a control character (U+000A); use plain text"),
    ('classes: [a, {name: b, synonyms: [ok, "x\\ty"]}]\n',
     "classes[1] (b): synonyms[1]: 'x\\ty' contains a control character (U+0009); use plain text"),
    ('classes: [a, "\\uD800"]\n', "classes[1]: name: '\\ud800' contains a control character (U+D800); use plain text"),
    ("classes: [2001-13-01, b]\n", "invalid YAML: month must be in 1..12"),
    ("[" * 3000 + "]" * 3000 + "\n", "invalid YAML: nested too deeply"),
])
def test_control_characters_and_unbuildable_yaml_are_spec_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: {message}"


def test_a_fifo_spec_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "spec.yaml")
    outcome = finishes(lambda: load_spec(tmp_path / "spec.yaml"))
    assert isinstance(outcome, SpecError)
    assert str(outcome) == (f"{tmp_path / 'spec.yaml'}: cannot read label spec (not a regular file (a FIFO); only "
                            "regular files are read)")
