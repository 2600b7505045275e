"""Label-spec lint: the separation rule by hand, each warning kind with a fake model, the CLI on the tiny model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from autolabel.classifier.lint import LintWarning, lint_spec, normalise, pair_separation
from autolabel.cli import main
from autolabel.core.spec import parse_spec

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
    from autolabel.classifier.lint import separation_matrix

    rng = np.random.default_rng(3)
    vectors = [rng.normal(size=(n, 6)) for n in (1, 3, 2, 4)]
    means = [v.mean(axis=0) / np.linalg.norm(v.mean(axis=0)) for v in (x / np.linalg.norm(x, axis=1, keepdims=True)
                                                                        for x in vectors)]
    matrix = separation_matrix(vectors, 7.0)
    for a in range(4):
        for b in range(4):
            assert matrix[a, b] == pytest.approx(pair_separation(vectors[a], means[b], 7.0), abs=1e-12)


def clustered_vectors(seed: int, classes: int, dim: int = 6) -> list[np.ndarray]:
    """Prompt embeddings of `classes` classes (1–4 prompts each) in a few tight clusters: many confusable pairs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim))
    return [centres[c % 4] + 0.05 * rng.normal(size=(int(rng.integers(1, 5)), dim)) for c in range(classes)]


@pytest.mark.parametrize("keep", [None, 1, 7, 10_000])
def test_confusable_pairs_block_by_block_equal_every_pair_by_hand(monkeypatch: pytest.MonkeyPatch,
                                                                  keep: int | None) -> None:
    import autolabel.classifier.lint as lint_module

    monkeypatch.setattr(lint_module, "TILE_CLASSES", 5)  # 29 classes: 6 blocks, so 21 tiles and their seams
    monkeypatch.setattr(lint_module, "TILE_PROMPTS", 9)
    vectors, scale = clustered_vectors(5, 29), 20.0
    units = [v / np.linalg.norm(v, axis=1, keepdims=True) for v in vectors]
    means = [u.mean(axis=0) / np.linalg.norm(u.mean(axis=0)) for u in units]
    pairs = sorted((min(pair_separation(vectors[a], means[b], scale), pair_separation(vectors[b], means[a], scale)),
                    a, b) for a in range(29) for b in range(a + 1, 29))
    bad = [p for p in pairs if p[0] < lint_module.SEPARABLE]
    assert 29 < len(bad) < 29 * 28 / 2  # the case has both kinds

    found = lint_module.confusable_pairs(vectors, scale, keep)
    assert found.total == len(bad)
    expected = bad if keep is None else bad[:keep]
    assert list(zip(found.first.tolist(), found.second.tolist(), strict=True)) == [(a, b) for _, a, b in expected]
    assert found.scores == pytest.approx([s for s, _, _ in expected], abs=1e-12)
    partners = [sum(c in (a, b) for _, a, b in bad) for c in range(29)]
    assert found.partners.tolist() == partners
    for c in range(29):
        own = [(s, b if a == c else a) for s, a, b in bad if c in (a, b)]
        assert found.worst[c] == (min(own)[1] if own else -1)


def test_each_kind_is_bounded_and_counted() -> None:
    long = "one two three four five six seven eight nine"
    names = [f"c{i}" for i in range(30)]
    spec = spec_of([{"name": n, "prompts": [f"{long} {n}", f"{long} {n} again"]} for n in names]
                   + ["c0.", "c1!"])  # two duplicate names, whose templated prompts duplicate too
    rng = np.random.default_rng(0)
    vectors = {p: [1.0, 0.0] + rng.normal(scale=1e-3, size=2).tolist()
               for c in spec.classes for p in spec.prompts_for(c)}
    from autolabel.classifier.lint import lint

    found = lint(spec, FakeModel(), fake_encoder(vectors), limit=4)
    assert [sum(w.kind == k for w in found.warnings) for k in ("duplicate", "too_long", "confusable")] == [4, 4, 4]
    assert found.count("duplicate") == 4 and found.count("too_long") == 60 and found.count("confusable") == 32 * 31 / 2
    assert found.more("too_long") == 56 and found.more("duplicate") == 0
    assert found.confused == 32 and "(31 partners, worst" in found.summary()
    everything = lint_spec(spec, FakeModel(), fake_encoder(vectors))
    assert len(everything) == found.count() == 4 + 60 + 496


def lookalike_spec(tmp_path: Path, classes: int) -> Path:
    """A spec of classes named with the tiny CLIP's few words: its random-init model cannot tell them apart."""
    from .conftest import WORDS

    names = [" ".join(words) for words in itertools.product(WORDS[3:], repeat=2)][:classes]
    path = tmp_path / "lookalike.yaml"
    path.write_text(yaml.safe_dump({"templates": ["a photo of a {label}.", "a drawing of the {label}."],
                                    "classes": names}))
    return path


def test_lint_prints_the_worst_pairs_and_a_count_not_every_pair(tmp_path: Path, tiny_clip: Path) -> None:
    spec = lookalike_spec(tmp_path, 60)
    result = CliRunner().invoke(main, ["lint", str(spec), "--model", str(tiny_clip), "--cache-dir",
                                       str(tmp_path / "c"), "--limit", "5", "--strict"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    pairs = [ln for ln in lines if ": confusable: classes '" in ln]
    more = [ln for ln in lines if ": confusable: … and " in ln]
    summary = [ln for ln in lines if ": summary: " in ln]
    assert len(pairs) == 5 and len(more) == 1 and len(summary) == 1 and len(lines) == 7, lines
    total = int(summary[0].split(": summary: ")[1].split(" confusable")[0].replace(",", ""))
    assert 1000 < total <= 60 * 59 // 2 and f"… and {total - 5:,} more" in more[0]
    assert f"{total:,} lint warning(s)" in result.stderr
    every = CliRunner().invoke(main, ["lint", str(spec), "--model", str(tiny_clip), "--cache-dir",
                                      str(tmp_path / "c"), "--all"])
    assert len([ln for ln in every.stdout.splitlines() if ": confusable: classes '" in ln]) == total


@pytest.mark.parametrize("verbose", [False, True])
def test_run_prints_a_handful_of_pairs_and_one_count(tmp_path: Path, image_folder: Path, tiny_clip: Path,
                                                     verbose: bool) -> None:
    from autolabel.classifier.lint import SHOWN

    spec = lookalike_spec(tmp_path, 60)
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(spec), "--out",
                                       str(tmp_path / "o.parquet"), "--model", str(tiny_clip), "-q",
                                       *(["-v"] if verbose else [])])
    assert result.exit_code == 0, result.output
    pairs = [ln for ln in result.stderr.splitlines() if "too close for the model to separate" in ln]
    counts = [ln for ln in result.stderr.splitlines() if "more confusable warnings" in ln]
    assert len(pairs) == (SHOWN if verbose else 3) and len(counts) == 1, result.stderr
    assert "confusable class pairs in all; 60 of 60 classes have at least one" in counts[0]
