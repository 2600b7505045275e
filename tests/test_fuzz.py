"""Generated label specs and manifests through `autolabel run`: never a traceback, exit code 0, 1 or 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autolabel.cli import main

from .conftest import noise_image

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Pick one strategy, each with its weight (one_of would weigh repeated ones once)."""
    pool = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


text = st.text(st.characters(codec="utf-8"), max_size=12)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
                   text, st.sampled_from(["{label}", "a photo of a {label}.", "{}", "default", "nosuchset"]))
value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                     max_leaves=6)
name = weighted((3, st.sampled_from(["cat", "dog", "bird", "red car", "[/b]", "[bold]x", "x\x00y", "tab\there", "",
                                     " ", "2001-13-01", "a/b", "..", "é", "<tag> & \"q\""])), (1, text))
entry = st.fixed_dictionaries({"name": st.one_of(name, scalar)}, optional={
    "synonyms": st.one_of(st.lists(name, max_size=2), value), "prompts": st.lists(text, max_size=2),
    "threshold": st.one_of(st.floats(0, 1), scalar)})
class_entry = weighted((6, name), (2, entry), (1, value))  # mostly plausible: many examples reach the model
classes = st.lists(class_entry, min_size=2, max_size=4, unique_by=lambda e: str(e).casefold())
spec_document = st.fixed_dictionaries({"classes": weighted((4, classes),
                                                           (1, value))},
                                      optional={
    "templates": st.one_of(st.lists(st.sampled_from(["a {label}", "{} here", "no placeholder"]) | text,
                                    max_size=3), scalar),
    "threshold": st.one_of(st.floats(0, 1), scalar), "min_margin": st.one_of(st.floats(0, 1), scalar),
})
yaml_token = st.sampled_from(["classes:", "templates:", "threshold:", "name:", "synonyms:", "- ", "  ", "\n", "[", "]",
                              "{", "}", ",", ": ", "cat", "'{label}'", "2001-13-01", "2001-02-30", "&a ", "*a",
                              "!!binary ", "!!python/name:os.system ", "!!float ", "1e999", "~", "? ", "|", "\t",
                              "\\u0000", "'", '"', "#", "---", "...", "[/b]", "\x00"])
dumped = spec_document.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
spec_text = weighted((4, dumped), (1, st.lists(yaml_token, max_size=30).map("".join)), (1, st.text(max_size=200)))


@pytest.fixture(scope="module")
def fast_model(tiny_clip: Path):
    """The tiny CLIP, loaded once: every example that gets past validation still runs the real model."""
    from autolabel.embedding.model import ZeroShotModel

    loaded = ZeroShotModel.load(str(tiny_clip))
    mp = pytest.MonkeyPatch()
    mp.setattr(ZeroShotModel, "load", classmethod(lambda cls, *a, **k: loaded))
    yield tiny_clip
    mp.undo()


def check(result) -> None:
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


@FUZZ
@given(document=spec_text)
@example(document='classes: ["[/b]", cat]\n')  # crashed: rich read the name as markup
@example(document="classes: [2001-13-01, b]\n")  # crashed: PyYAML builds dates with datetime
def test_generated_specs(tmp_path: Path, fast_model: Path, document: str) -> None:
    images = tmp_path / "images"
    if not images.exists():
        images.mkdir()
        noise_image(0, (40, 40)).save(images / "a.png")
    spec = tmp_path / "spec.yaml"
    spec.write_text(document, encoding="utf-8")
    check(CliRunner().invoke(main, ["run", str(images), "--labels", str(spec), "--out", str(tmp_path / "o.parquet"),
                                    "--model", str(fast_model), "--no-cache"]))  # not quiet: the summary prints names


cell = st.one_of(st.sampled_from(["a.png", "missing.png", "", "../a.png", "/dev/zero", "images", "a.png\n", "1"]),
                 text)
header = st.lists(st.sampled_from(["path", "image", "label", "x", ""]), min_size=1, max_size=3) | st.lists(
    text, min_size=1, max_size=2)
manifest = header.flatmap(lambda h: st.tuples(st.just(h), st.lists(
    st.lists(cell | value if len(h) else cell, min_size=len(h), max_size=len(h)), max_size=4)))


def manifest_text(suffix: str, header: list[str], body: list[list]) -> str:
    if suffix == ".jsonl":
        return "".join(json.dumps(dict(zip(header, row, strict=True))) + "\n" for row in body)
    if suffix == ".txt":
        return "".join(str(row[0]) + "\n" for row in body)
    sep = "\t" if suffix == ".tsv" else ","
    return "\n".join(sep.join(str(c) for c in line) for line in [header, *body]) + "\n"


@FUZZ
@given(suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"]), table=manifest,
       garbage=st.one_of(st.none(), st.none(), st.binary(max_size=64)))
@example(suffix=".csv", table=(["path", "path"], [["a.png", "a.png"]]), garbage=None)  # crashed: KeyError
@example(suffix=".jsonl", table=(["path"], [[["a.png"]]]), garbage=None)  # crashed: Arrow cannot cast a list
def test_generated_manifests(tmp_path: Path, fast_model: Path, labels_yaml: Path, suffix: str,
                             table: tuple[list[str], list[list]], garbage: bytes | None) -> None:
    noise_image(0, (40, 40)).save(tmp_path / "a.png")
    path = tmp_path / f"m{suffix}"
    if garbage is None:
        path.write_text(manifest_text(suffix, *table), encoding="utf-8")
    else:
        path.write_bytes(garbage)
    check(CliRunner().invoke(main, ["run", str(path), "--labels", str(labels_yaml), "--out",
                                    str(tmp_path / "o.csv"), "--model", str(fast_model), "--no-cache", "-q"]))
