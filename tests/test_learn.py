"""Learning from review: examples adapt the classifier, `other` catches what fits no class, human labels stay."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from shapes import COLORS, SHAPES, draw_shape

from autolabel.classifier import adapt
from autolabel.classifier.adapt import Adapter, fit
from autolabel.cli import main
from autolabel.table.files import read_metadata

from .conftest import TINY_SHAPES

MODEL = TINY_SHAPES / "model"
COMBOS = [f"{c} {s}" for c in COLORS for s in SHAPES]
NONSENSE = ["blorf", "zindle", "quaffo", "merty", "plonk", "sarvi", "tobbly", "wexel", "yurn", "kazzo", "fimble",
            "drupp"]
TEMPLATES = ["a photo of a {label}.", "a drawing of a {label}.", "a picture of the {label}.", "a simple {label}."]


def draw(folder: Path, combos: list[str], per_combo: int, seed: int) -> pd.DataFrame:
    """per_combo tiny-shapes images of each "colour shape" combo; a frame of path (absolute) and combo."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(per_combo):
        for combo in combos:
            color, shape = combo.split()
            size = rng.randint(48, 120)
            path = folder / f"{combo.replace(' ', '-')}-{seed}-{k}.png"
            draw_shape(color, shape, rng, (size, size)).save(path)
            rows.append({"path": str(path), "combo": combo})
    return pd.DataFrame(rows)


def spec(tmp: Path, classes: list, **extra) -> Path:
    path = tmp / f"spec-{len(list(tmp.glob('spec-*')))}.yaml"
    path.write_text(yaml.safe_dump({"model": str(MODEL), "templates": TEMPLATES, "classes": classes, **extra}))
    return path


def label(manifest: Path, labels: Path, out: Path, *extra: str) -> dict:
    summary = out.with_suffix(".json")
    result = CliRunner().invoke(main, ["run", str(manifest), "--labels", str(labels), "--out", str(out),
                                       "--summary-json", str(summary), "-q", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(summary.read_text())


def manifest(tmp: Path, frame: pd.DataFrame, name: str, truth: dict[str, str] | None = None) -> Path:
    path = tmp / f"{name}.csv"
    out = frame.assign(truth=frame.combo.map(truth) if truth else frame.combo)
    out[["path", "truth"]].to_csv(path, index=False)
    return path


def examples(tmp: Path, frame: pd.DataFrame, name: str, truth: dict[str, str] | None = None) -> Path:
    path = tmp / f"{name}.csv"
    frame.assign(reviewed_label=frame.combo.map(truth) if truth else frame.combo)[["path", "reviewed_label"]] \
        .to_csv(path, index=False)
    return path


def accuracy(out: Path) -> float:
    frame = pd.read_parquet(out)
    return float((frame.label == frame.truth).mean())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("world")
    return {"test": draw(root / "test", COMBOS, 10, 1), "shots": draw(root / "shots", COMBOS, 8, 2)}


# --- the adapter, alone -------------------------------------------------------------------------------------------

def test_adapter_logits_equal_a_hand_computation() -> None:
    keys = np.asarray([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32)
    adapter = Adapter(keys, np.asarray([0, 0, 1]), 3, alpha=2.0, beta=3.0)
    image = np.asarray([[0.8, 0.6]])
    cos = [0.8, 0.96, 0.6]
    expected = [2 * (np.exp(-3 * (1 - cos[0])) + np.exp(-3 * (1 - cos[1]))), 2 * np.exp(-3 * (1 - cos[2])), 0.0]
    np.testing.assert_allclose(adapter.logits(image)[0], expected, rtol=1e-6)


def test_fit_keeps_zero_shot_when_the_examples_do_not_beat_it() -> None:
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(8, 4))
    classes = np.arange(8) % 4
    zero_shot = np.eye(4)[classes] * 10  # zero-shot already right on every example
    result = fit(embeddings, classes, zero_shot, 10.0, ["a", "b", "c", "d"])
    assert not result.used and result.adapter is None
    assert result.loo_zero_shot == 1.0 and "zero-shot kept" in result.note


def test_fit_learns_what_zero_shot_cannot() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16))
    classes = np.repeat(np.arange(3), 4)
    embeddings = centres[classes] + 0.05 * rng.normal(size=(12, 16))
    result = fit(embeddings, classes, np.zeros((12, 3)), 10.0, ["a", "b", "c"])
    assert result.used and result.loo_adapted == 1.0 and result.loo_zero_shot < 0.5
    assert result.examples == {"a": 4, "b": 4, "c": 4}


# --- acceptance, with the tiny model ---------------------------------------------------------------------------------

def test_nonsense_names_reach_95_percent_with_4_examples_per_class(tmp_path, world) -> None:
    names = dict(zip(COMBOS, NONSENSE, strict=True))
    labels = spec(tmp_path, NONSENSE)
    test = manifest(tmp_path, world["test"], "test", names)
    shots = world["shots"].groupby("combo").head(4)
    label(test, labels, tmp_path / "zero.parquet", "--no-cache")
    summary = label(test, labels, tmp_path / "adapted.parquet", "--no-cache", "--examples",
                    str(examples(tmp_path, shots, "shots", names)))
    assert accuracy(tmp_path / "zero.parquet") < 0.3  # the text tower cannot know these words
    assert accuracy(tmp_path / "adapted.parquet") >= 0.95
    assert summary["learned"]["used"] and summary["learned"]["examples"] == 48
    meta = read_metadata(tmp_path / "adapted.parquet")
    assert meta["learned"]["method"] == "tip-adapter" and meta["learned"]["examples_per_class"]["blorf"] == 4
    assert meta["learned"]["loo_accuracy"]["adapted"] > meta["learned"]["loo_accuracy"]["zero_shot"]


def test_classes_of_two_unrelated_visual_modes_reach_95_percent_with_8_examples(tmp_path, world) -> None:
    modes = dict(zip(COMBOS[:6], NONSENSE[:6], strict=True)) | dict(zip(COMBOS[6:][::-1], NONSENSE[:6], strict=True))
    labels = spec(tmp_path, NONSENSE[:6])
    shots = world["shots"].groupby("combo").head(4)  # 4 per mode: 8 per class
    label(manifest(tmp_path, world["test"], "test", modes), labels, tmp_path / "adapted.parquet", "--no-cache",
          "--examples", str(examples(tmp_path, shots, "shots", modes)))
    assert accuracy(tmp_path / "adapted.parquet") >= 0.95


def test_one_example_per_class_costs_nothing_where_zero_shot_is_right(tmp_path, world) -> None:
    labels = spec(tmp_path, COMBOS)
    test = manifest(tmp_path, world["test"], "test")
    label(test, labels, tmp_path / "zero.parquet", "--no-cache")
    summary = label(test, labels, tmp_path / "one.parquet", "--no-cache", "--examples",
                    str(examples(tmp_path, world["shots"].groupby("combo").head(1), "one")))
    assert accuracy(tmp_path / "zero.parquet") >= 0.97
    assert accuracy(tmp_path / "one.parquet") >= accuracy(tmp_path / "zero.parquet") - 0.01
    assert summary["learned"]["examples"] == 12


def test_examples_already_cached_encode_nothing(tmp_path, world) -> None:
    labels = spec(tmp_path, NONSENSE)
    names = dict(zip(COMBOS, NONSENSE, strict=True))
    test = manifest(tmp_path, world["test"].head(48), "test", names)
    shots = examples(tmp_path, world["shots"].groupby("combo").head(4), "shots", names)
    cache = str(tmp_path / "cache")
    first = label(test, labels, tmp_path / "1.parquet", "--cache-dir", cache, "--examples", str(shots))
    again = label(test, labels, tmp_path / "2.parquet", "--cache-dir", cache, "--examples", str(shots))
    assert first["encoded"] == 48 + 48 and again["encoded"] == 0


def test_examples_inside_source_keep_their_human_label(tmp_path, world) -> None:
    labels = spec(tmp_path, COMBOS)
    test = world["test"].head(36)
    # People labelled 12 of the images, four of them against what the model (rightly) says.
    reviewed = test.iloc[::3].copy()
    reviewed["combo"] = [COMBOS[(COMBOS.index(c) + (1 if i < 4 else 0)) % 12] for i, c in enumerate(reviewed.combo)]
    table = examples(tmp_path, reviewed, "reviewed")
    label(manifest(tmp_path, test, "test"), labels, tmp_path / "out.parquet", "--no-cache", "--examples", str(table))
    out = pd.read_parquet(tmp_path / "out.parquet").set_index("path")
    human = dict(zip(reviewed.path, reviewed.combo, strict=True))
    assert (out.loc[list(human), "status"] == "reviewed").all()
    assert out.loc[list(human), "label"].tolist() == list(human.values())
    assert set(out.drop(index=list(human)).status) <= {"accepted", "review"}
    overruled = out.loc[reviewed.path[:4]]
    assert all(top[0] != lab for top, lab in zip(overruled.top_labels, overruled.label, strict=True))  # model's top-k


def test_an_unknown_reviewed_label_is_one_line_exit_2_and_no_output(tmp_path, world) -> None:
    labels = spec(tmp_path, COMBOS)
    table = tmp_path / "bad.csv"
    pd.DataFrame({"path": world["shots"].path[:3], "reviewed_label": ["red circle", "purple blob", "teal"]}) \
        .to_csv(table, index=False)
    result = CliRunner().invoke(main, ["run", str(manifest(tmp_path, world["test"].head(6), "t")), "--labels",
                                       str(labels), "--out", str(tmp_path / "o.parquet"), "--examples", str(table)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: examples: label(s) 'purple blob', 'teal' are not in the label spec; labels must be one of: "
        + ", ".join(COMBOS) + " (or add `other:` to the spec)"]
    assert not (tmp_path / "o.parquet").exists()


def test_missing_and_broken_examples_are_skipped_with_a_warning(tmp_path, world) -> None:
    labels = spec(tmp_path, NONSENSE)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    shots = world["shots"].groupby("combo").head(4)
    rows = pd.DataFrame({"path": [*shots.path, str(tmp_path / "gone.png"), str(tmp_path / "broken.png")],
                         "label": [*shots.combo.map(dict(zip(COMBOS, NONSENSE, strict=True))), "blorf", "drupp"]})
    rows.to_csv(tmp_path / "ex.csv", index=False)
    result = CliRunner().invoke(main, ["run", str(manifest(tmp_path, world["test"].head(12), "t")), "--labels",
                                       str(labels), "--out", str(tmp_path / "o.parquet"), "--examples",
                                       str(tmp_path / "ex.csv"), "--no-cache", "-q"])
    assert result.exit_code == 0, result.output
    assert "warning: example skipped: " in result.output and "gone.png: file not found" in result.output
    assert "broken.png: not a recognised image" in result.output
    assert read_metadata(tmp_path / "o.parquet")["learned"]["examples"] == 48


def test_spec_examples_are_globs_relative_to_the_spec(tmp_path, world) -> None:
    folder = tmp_path / "spec-dir"
    (folder / "ex").mkdir(parents=True)
    classes = []
    for name, combo in zip(NONSENSE, COMBOS, strict=True):
        for k, src in enumerate(world["shots"][world["shots"].combo == combo].path[:4]):
            (folder / "ex" / f"{name}-{k}.png").write_bytes(Path(src).read_bytes())
        classes.append({"name": name, "examples": [f"ex/{name}-*.png"]})
    labels = folder / "labels.yaml"
    labels.write_text(yaml.safe_dump({"model": str(MODEL), "templates": TEMPLATES, "classes": classes}))
    label(manifest(tmp_path, world["test"], "t", dict(zip(COMBOS, NONSENSE, strict=True))), labels,
          tmp_path / "o.parquet", "--no-cache")
    assert accuracy(tmp_path / "o.parquet") >= 0.95


def test_an_import_review_table_works_as_examples(tmp_path, world) -> None:
    labels = spec(tmp_path, NONSENSE)
    names = dict(zip(COMBOS, NONSENSE, strict=True))
    shots = world["shots"].groupby("combo").head(4)
    first = tmp_path / "first.parquet"
    label(manifest(tmp_path, shots, "shots", names), labels, first, "--no-cache")
    ls_export = [{"data": {"path": p},
                  "annotations": [{"result": [{"type": "choices", "value": {"choices": [names[c]]}}]}]}
                 for p, c in zip(shots.path, shots.combo, strict=True)]
    (tmp_path / "ls.json").write_text(json.dumps(ls_export))
    assert CliRunner().invoke(main, ["import-review", str(tmp_path / "ls.json"), "--into", str(first)]).exit_code == 0
    label(manifest(tmp_path, world["test"], "t", names), labels, tmp_path / "round2.parquet", "--no-cache",
          "--examples", str(first))
    assert accuracy(tmp_path / "round2.parquet") >= 0.95


# --- other ---------------------------------------------------------------------------------------------------------

IN_SET = [c for c in COMBOS if c.split()[0] in ("red", "green")]
OUT_OF_SET = [c for c in COMBOS if c not in IN_SET]


def open_set_rates(out: Path, other: str = "none of these") -> tuple[float, float, float]:
    frame = pd.read_parquet(out)
    inside = frame[frame.truth.isin(IN_SET)]
    outside = frame[~frame.truth.isin(IN_SET)]
    in_right = float(((inside.status == "accepted") & (inside.label == inside.truth)).mean())
    out_accepted = float(((outside.status == "accepted") & (outside.label != other)).mean())
    return in_right, out_accepted, float((outside.label == other).mean())


def test_other_without_examples_keeps_out_of_set_images_out(tmp_path, world) -> None:
    labels = spec(tmp_path, IN_SET, other="none of these")
    label(manifest(tmp_path, world["test"], "t"), labels, tmp_path / "o.parquet", "--no-cache")
    in_right, out_accepted, _ = open_set_rates(tmp_path / "o.parquet")
    assert out_accepted <= 0.10 and in_right >= 0.80
    frame = pd.read_parquet(tmp_path / "o.parquet")
    assert all(set(t) <= set(IN_SET) for t in frame.top_labels)  # top-k lists only the real classes
    assert read_metadata(tmp_path / "o.parquet")["other"]["negative_concepts"] > 0


def test_other_with_examples_labels_out_of_set_images_other(tmp_path, world) -> None:
    labels = spec(tmp_path, IN_SET, other="none of these")
    shots = world["shots"]
    chosen = pd.concat([shots[shots.combo.isin(IN_SET)].groupby("combo").head(4),
                        shots[~shots.combo.isin(IN_SET)].groupby("combo").head(1).head(4)])
    mapping = {c: (c if c in IN_SET else "none of these") for c in COMBOS}
    label(manifest(tmp_path, world["test"], "t"), labels, tmp_path / "o.parquet", "--no-cache", "--examples",
          str(examples(tmp_path, chosen, "ex", mapping)))
    in_right, _, out_other = open_set_rates(tmp_path / "o.parquet")
    assert out_other >= 0.90 and in_right >= 0.95


def test_eval_counts_reviewed_rows_apart(tmp_path, world) -> None:
    labels = spec(tmp_path, COMBOS)
    test = world["test"].head(24)
    table = examples(tmp_path, test.head(6), "reviewed")
    out = tmp_path / "o.parquet"
    label(manifest(tmp_path, test, "t"), labels, out, "--no-cache", "--examples", str(table))
    result = CliRunner().invoke(main, ["eval", str(out), "--truth", "truth", "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 18 and metrics["excluded"]["reviewed"] == 6


def test_other_that_no_vocabulary_word_can_stand_for_is_said(tmp_path, world, monkeypatch) -> None:
    from autolabel.classifier import openset

    labels = spec(tmp_path, IN_SET, other="none of these")
    args = ["run", str(manifest(tmp_path, world["test"].head(12), "t")), "--labels", str(labels), "--out",
            str(tmp_path / "o.parquet"), "--no-cache", "-q"]
    assert "other: no word" not in CliRunner().invoke(main, args).output  # colour words stand for it here
    monkeypatch.setattr(openset, "vocabulary_words", lambda tokens: [])  # a vocabulary with nothing to offer
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert ("warning: other: no word of the model's vocabulary is far enough from your classes to stand for 'none "
            "of these', so no image will get it; give a few examples labelled 'none of these' (--examples) to teach "
            "it") in result.output


def test_among_settings_that_fit_the_examples_equally_the_smallest_alpha_wins() -> None:
    """Perfectly separable examples: every α classifies them all right, and a larger α only makes the log-loss
    smaller, so preferring the log-loss picked the largest α and made images between classes look certain."""
    from autolabel.classifier import adapt

    rng = np.random.default_rng(0)
    centres = np.eye(3, 16)
    embeddings = np.repeat(centres, 4, axis=0) + 0.05 * rng.standard_normal((12, 16))
    classes = np.repeat(np.arange(3), 4)
    zero_shot = np.eye(3)[classes]  # the class names are informative: right on 9 of the 12 examples
    zero_shot[[0, 4, 8]] = np.eye(3)[[1, 2, 0]]
    fit = adapt.fit(embeddings, classes, zero_shot, 100.0, ["a", "b", "c"])
    assert fit.used and fit.loo_adapted == 1.0 and fit.alpha == adapt.ALPHAS[0]
    between = (centres[0] + centres[1]) / 2
    logits = fit.adapter.logits(between[None, :])[0]
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert probabilities.max() < 0.9  # halfway between two classes is not a sure thing


def test_mislabelled_examples_soften_the_confidences() -> None:
    """Temperature scaling on the leave-one-out logits: clean examples keep T = 1, wrong ones raise it."""
    from autolabel.classifier import adapt

    rng = np.random.default_rng(1)
    centres = np.eye(3, 16)
    embeddings = np.repeat(centres, 6, axis=0) + 0.05 * rng.standard_normal((18, 16))
    classes = np.repeat(np.arange(3), 6)
    clean = adapt.fit(embeddings, classes, np.zeros((18, 3)), 100.0, ["a", "b", "c"])
    noisy_classes = classes.copy()
    noisy_classes[[0, 6, 12]] = [1, 2, 0]  # one example of each class filed under the next one
    noisy = adapt.fit(embeddings, noisy_classes, np.zeros((18, 3)), 100.0, ["a", "b", "c"])
    assert clean.temperature == 1.0 and noisy.used and noisy.temperature > 1.0
    assert noisy.adapter.temperature == noisy.temperature and noisy.describe()["temperature"] == noisy.temperature


def test_a_strongly_softened_fit_says_the_examples_disagree() -> None:
    from autolabel.classifier.adapt import Fit
    from autolabel.learn.examples import Learned

    def line(temperature: float) -> str:
        fit = Fit("tip-adapter", True, {"a": 4, "b": 4}, 0.5, 0.75, 1.0, 4.0, temperature=temperature)
        return Learned(None, fit, {}, 0, ()).summary_line()  # type: ignore[arg-type]

    assert "disagree" not in line(1.0)
    assert line(8.0).endswith("the examples disagree with each other (some may be mislabelled, or classes overlap): "
                              "confidences softened ×8, check them")


def test_when_the_class_names_mean_nothing_one_example_per_class_is_enough() -> None:
    """Part codes: zero-shot is chance, so the examples must decide. With most classes seen once, leave-one-out
    cannot see what a class's single example teaches; it chose the smallest α and left most images to the noise of
    the text (73% on the demo's codes with 16 examples over 12 classes). Now α is at its largest there, and the
    singletons' misses do not soften the confidences (they did, ×64: every confidence near 1/12)."""
    rng = np.random.default_rng(1)
    centres = adapt._unit(rng.standard_normal((12, 32)))
    picked = [*range(12), 0, 1, 2, 3]  # every class once, four of them twice
    examples = centres[picked] + 0.15 * rng.standard_normal((16, 32))
    held_out = np.repeat(centres, 10, axis=0) + 0.15 * rng.standard_normal((120, 32))
    noise = rng.standard_normal((136, 12))  # the text tower's logits know nothing of these classes
    fit = adapt.fit(examples, np.asarray(picked), noise[:16], 10.0, [f"P-{i}" for i in range(12)])
    assert fit.used and fit.alpha == adapt.ALPHAS[-1] and fit.note == adapt.WEAK_NOTE
    logits = (noise[16:] + fit.adapter.logits(held_out)) / fit.adapter.temperature
    assert np.mean(logits.argmax(axis=1) == np.repeat(np.arange(12), 10)) >= 0.9
    assert fit.temperature < adapt.TEMPERATURES[-1]


def test_examples_are_used_when_zero_shot_knows_nothing_even_if_leave_one_out_cannot_tell() -> None:
    """Two examples per class, each of another look (as `autolabel queue` picks them): leaving one out leaves no
    key of its look, so no setting beats zero-shot; zero-shot at chance must not win on that estimate."""
    rng = np.random.default_rng(4)
    looks = rng.normal(size=(6, 32))
    classes = np.repeat(np.arange(3), 2)
    embeddings = looks + 0.01 * rng.normal(size=(6, 32))
    blind = fit(embeddings, classes, np.zeros((6, 3)), 10.0, ["a", "b", "c"])
    assert blind.loo_adapted <= blind.loo_zero_shot and blind.used
    assert (blind.alpha, blind.beta, blind.temperature) == (adapt.BLIND_ALPHA, adapt.BLIND_BETA, 1.0)
    test = looks[[1, 2, 5]] + 0.01 * rng.normal(size=(3, 32))  # new images of three of the looks
    logits = blind.adapter.logits(test)
    assert logits.argmax(axis=1).tolist() == [0, 1, 2]
    knowing = np.eye(3)[classes] * 10.0  # zero-shot right on every example: a tie keeps it, as before
    assert not fit(embeddings, classes, knowing, 10.0, ["a", "b", "c"]).used


def test_examples_from_hard_rows_only_leave_the_rows_zero_shot_is_sure_of_alone() -> None:
    """The guard: examples zero-shot would all send to review are no sample of the data; the adapter they fit
    decides only rows zero-shot is unsure of, and the summary says so. Examples that include sure rows are
    a sample: no guard."""
    from dataclasses import replace

    from autolabel.classifier.classify import Classifier
    from autolabel.learn.examples import Embedded, Example, _learned

    rng = np.random.default_rng(5)
    dim = 8
    classifier = Classifier(("a", "b", "c"), np.eye(3, dim), 30.0, 0.0, np.full(3, 0.8), 0.3, 3)
    def unit_rows(rows: np.ndarray) -> np.ndarray:
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    between = np.r_[0.58, 0.56, 0.0, 0.0, np.zeros(dim - 4)]  # zero-shot leans to `a`, unsure
    look_a, look_b = between + 0.5 * np.eye(dim)[4], between + 0.5 * np.eye(dim)[5]
    hard = unit_rows(np.vstack([np.tile(look_a, (5, 1)), np.tile(look_b, (3, 1))]) + 0.01 * rng.normal(size=(8, dim)))
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1])  # people say `b` for the second look
    assert all(p.status == "review" for p in classifier.classify(hard))
    fitted = fit(hard, labels, classifier.zero_shot_logits(hard), classifier.scale, list(classifier.columns))
    examples = tuple(Example(f"/x/{i}.png", "abc"[c], "t") for i, c in enumerate(labels))
    learned = _learned(classifier, Embedded(examples, hard, 0, ()), fitted, {})
    assert fitted.used and learned.hard_only and learned.classifier.guarded
    assert "all rows zero-shot was unsure of" in learned.summary_line()
    sure = unit_rows((np.eye(dim)[0] + 0.6 * np.eye(dim)[5])[None, :])  # clearly `a` to zero-shot, near look b
    assert classifier.classify(sure)[0].status == "accepted"
    assert learned.classifier.classify(sure)[0] == classifier.classify(sure)[0]  # kept as zero-shot decided it
    assert replace(learned.classifier, guarded=False).classify(sure)[0] != classifier.classify(sure)[0]
    new_b = unit_rows(look_b[None, :] + 0.01 * rng.normal(size=(1, dim)))
    assert learned.classifier.classify(new_b)[0].label == "b"  # the hard rows learn from the examples
    mixed = np.vstack([hard, np.eye(3, dim)])  # plus one sure example of each class: a sample, no guard
    mixed_labels = np.r_[labels, [0, 1, 2]]
    refit = fit(mixed, mixed_labels, classifier.zero_shot_logits(mixed), classifier.scale, list(classifier.columns))
    both = tuple(Example(f"/y/{i}.png", "abc"[c], "t") for i, c in enumerate(mixed_labels))
    assert not _learned(classifier, Embedded(both, mixed, 0, ()), refit, {}).hard_only


def test_examples_of_classes_the_text_barely_knows_are_not_called_hard_rows_only() -> None:
    """Zero-shot right on a quarter of the examples (over 1.5× chance of 12 classes, under half) does not know the
    classes: every row is unsure then, so examples from the queue are a sample, and no guard or warning applies
    (the demo's round 2 warned that its queue-picked examples were 'not a sample of the data')."""
    from autolabel.classifier.classify import Classifier
    from autolabel.learn.examples import Embedded, Example, _learned

    rng = np.random.default_rng(7)
    k, dim = 12, 24
    classifier = Classifier(tuple(f"P-{i}" for i in range(k)), np.eye(k, dim), 30.0, 0.0, np.full(k, 0.8), 0.3, 3)
    labels = np.repeat(np.arange(k), 2)
    looks = np.eye(dim)[k:2 * k]
    text_lean = np.where(np.arange(len(labels)) % 4 == 0, labels, (labels + 1) % k)  # right on 1 in 4
    rows = 0.1 * np.eye(dim)[text_lean] + looks[labels] + 0.01 * rng.normal(size=(len(labels), dim))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    fitted = fit(rows, labels, classifier.zero_shot_logits(rows), classifier.scale, list(classifier.columns))
    assert 1.5 / k < fitted.loo_zero_shot < 0.5
    assert all(p.status == "review" for p in classifier.classify(rows))
    examples = tuple(Example(f"/x/{i}.png", f"P-{c}", "t") for i, c in enumerate(labels))
    learned = _learned(classifier, Embedded(examples, rows, 0, ()), fitted, {})
    assert fitted.used and not learned.hard_only and not learned.classifier.guarded
    assert "unsure of" not in learned.summary_line()
