"""Label-spec lint: the separation rule by hand, each warning kind with a fake model, the CLI on the tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.lint import LintWarning, lint_spec, normalise, pair_separation
from autolabel.spec import parse_spec

from .conftest import TINY_SHAPES


def test_normalise_ignores_case_spaces_and_end_punctuation() -> None:
    assert normalise("  A Photo of  a\tRed Circle. ") == "a photo of a red circle"


def test_pair_separation_by_hand() -> None:
    own = np.array([[1.0, 0.0], [0.0, 1.0]])
    other = np.array([1.0, 1.0]) / math.sqrt(2)
    # Each prompt's own centre is the other prompt (leave one out): cos 0 to it, 1/√2 to `other`.
    expected = 1 / (1 + math.exp(-10 * (0 - 1 / math.sqrt(2))))
    assert pair_separation(own, other, scale=10) == pytest.approx(expected)


def test_pair_separation_with_one_prompt_uses_the_class_itself() -> None:
    own = np.array([[1.0, 0.0]])
    other = np.array([0.6, 0.8])
    assert pair_separation(own, other, scale=5) == pytest.approx(1 / (1 + math.exp(-5 * (1 - 0.6))))


class FakeModel:
    """What lint needs of a model: a context length, a temperature and a long-prompt check."""

    context_length = 8
    logit_scale = 100.0

    def too_long(self, prompts):
        return [p for p in prompts if len(p.split()) > self.context_length]


def fake_encoder(vectors: dict[str, list[float]]):
    def encode(prompts):
        return np.array([np.asarray(vectors[p], float) / np.linalg.norm(vectors[p]) for p in prompts])
    return encode


def spec_of(classes: list, templates: list[str] | None = None):
    return parse_spec({"templates": templates or ["{label}"], "classes": classes}, "spec.yaml")


def test_close_classes_are_confusable_and_distinct_ones_pass() -> None:
    spec = spec_of(["cat", "kitty", "car"])
    vectors = {"cat": [1, 0.001, 0], "kitty": [1, 0, 0.001], "car": [0, 1, 0]}
    warnings = lint_spec(spec, FakeModel(), fake_encoder(vectors))
    assert [(w.kind, w.classes) for w in warnings] == [("confusable", ("cat", "kitty"))]
    assert "too close for the model to separate" in warnings[0].message


def test_prompts_over_the_context_are_named() -> None:
    long = "a very long prompt that goes on and on and on"
    spec = spec_of([{"name": "cat", "prompts": [long]}, "car"])
    vectors = {"cat": [1, 0], long: [1, 0.2], "car": [0, 1]}
    warnings = lint_spec(spec, FakeModel(), fake_encoder(vectors))
    assert warnings == [LintWarning("too_long", f"prompt '{long}' of class 'cat' is longer than the model's 8-token "
                                                "context and will be cut", classes=("cat",), prompts=(long,))]


def test_names_and_prompts_equal_after_normalising() -> None:
    spec = spec_of(["red circle", "Red  Circle.", "blue"])
    vectors = {"red circle": [1, 0], "Red  Circle.": [0.2, 1], "blue": [-1, 0.1]}
    kinds = [(w.kind, w.classes) for w in lint_spec(spec, FakeModel(), fake_encoder(vectors))]
    assert kinds == [("duplicate", ("red circle", "Red  Circle.")), ("duplicate", ("red circle", "Red  Circle."))]


MODEL = TINY_SHAPES / "model"


def lint(spec: Path, tmp_path: Path, *extra: str):
    return CliRunner().invoke(main, ["lint", str(spec), "--model", str(MODEL), "--cache-dir", str(tmp_path / "c"),
                                     *extra])


def test_tiny_model_cannot_tell_red_circle_from_circle_red(tmp_path: Path) -> None:
    spec = yaml.safe_load((TINY_SHAPES / "labels.yaml").read_text())
    spec["classes"].append("circle red")
    spec.pop("model")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = lint(path, tmp_path)
    assert result.exit_code == 0, result.output
    confusable = [line for line in result.output.splitlines() if ": confusable: " in line]
    assert len(confusable) == 1 and "'red circle' and 'circle red'" in confusable[0]
    assert lint(path, tmp_path, "--strict").exit_code == 1


@pytest.mark.parametrize("name", ["labels.yaml", "colors.yaml", "shapes.yaml"])
def test_shipped_tiny_specs_pass_strict(tmp_path: Path, name: str) -> None:
    result = lint(TINY_SHAPES / name, tmp_path, "--strict")
    assert result.exit_code == 0, result.output
    assert "0 warnings" in result.output


def test_the_separation_matrix_equals_pair_separation_for_every_pair() -> None:
    from autolabel.lint import separation_matrix

    rng = np.random.default_rng(3)
    vectors = [rng.normal(size=(n, 6)) for n in (1, 3, 2, 4)]
    means = [v.mean(axis=0) / np.linalg.norm(v.mean(axis=0)) for v in (x / np.linalg.norm(x, axis=1, keepdims=True)
                                                                        for x in vectors)]
    matrix = separation_matrix(vectors, 7.0)
    for a in range(4):
        for b in range(4):
            assert matrix[a, b] == pytest.approx(pair_separation(vectors[a], means[b], 7.0), abs=1e-12)
