"""Multi-label runs: the per-class scores (SigLIP's own sigmoid, CLIP's mean-field softmax), labels, status, outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

import autolabel
from autolabel.classifier.classify import Classifier, MultiLabel
from autolabel.cli import main
from autolabel.core.errors import SpecError
from autolabel.core.spec import parse_spec
from autolabel.table.schema import OUTPUT_SCHEMA

from .conftest import COLOR_PAIRS_SPEC, TINY_SHAPES, label_shape_pairs, noise_image

CLASSES = ["cat", "dog", "bird", "red car", "green tree"]


def classifier(multi: MultiLabel | None, thresholds: list[float], seed: int = 0) -> tuple[Classifier, np.ndarray]:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(4, 8))
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    clf = Classifier(class_names=("a", "b", "c", "d"), matrix=matrix, scale=30.0, bias=-2.0,
                     thresholds=np.asarray(thresholds), min_margin=0.0, top_k=4, multi_label=multi)
    return clf, rng.normal(size=(50, 8))


def test_clip_scores_are_the_softmax_against_the_average_competitor() -> None:
    thresholds = [0.5, 0.3, 0.7, 0.5]
    clf, images = classifier(MultiLabel(pairwise_sigmoid=False, band=1.0), thresholds)
    unit = images / np.linalg.norm(images, axis=1, keepdims=True)
    logits = 30.0 * unit @ clf.matrix.T - 2.0
    for row, pred in zip(logits, clf.classify(images), strict=True):
        # Independently: the softmax over [class c, and K-1 copies of the others' mean logit].
        expected = {}
        for c, name in enumerate("abcd"):
            rest = np.delete(row, c).mean()
            competitors = np.r_[row[c], np.full(3, rest)]
            expected[name] = np.exp(row[c] - competitors.max()) / np.exp(competitors - competitors.max()).sum()
        got = dict(zip(pred.top_labels, pred.top_scores, strict=True))
        assert got == pytest.approx(expected, abs=1e-12)
        assert pred.top_scores == sorted(pred.top_scores, reverse=True) and pred.label == pred.top_labels[0]
        assert pred.confidence == pytest.approx(max(expected.values()), abs=1e-12)
        assert pred.labels == [n for n in pred.top_labels if expected[n] >= thresholds["abcd".index(n)]]
        odds = {n: np.log(s / (1 - s)) for n, s in expected.items()}
        cuts = {n: np.log(t / (1 - t)) for n, t in zip("abcd", thresholds, strict=True)}
        assert pred.margin == pytest.approx(min(abs(odds[n] - cuts[n]) for n in odds), abs=1e-9)
        assert pred.status == ("accepted" if pred.margin >= 1.0 else "review")
    sums = [sum(p.top_scores) for p in clf.classify(images)]
    assert max(abs(s - 1) for s in sums) > 0.1  # independent scores, not a distribution


def test_sigmoid_models_score_their_own_logits_and_single_label_is_untouched() -> None:
    clf, images = classifier(MultiLabel(pairwise_sigmoid=True, band=0.0), [0.5] * 4)
    unit = images / np.linalg.norm(images, axis=1, keepdims=True)
    expected = 1 / (1 + np.exp(-(30.0 * unit @ clf.matrix.T - 2.0)))
    for row, pred in zip(expected, clf.classify(images), strict=True):
        assert dict(zip(pred.top_labels, pred.top_scores, strict=True)) == pytest.approx(
            dict(zip("abcd", row, strict=True)), abs=1e-12)
        assert pred.status == "accepted"  # a band of 0 reviews nothing
    single, _ = classifier(None, [0.5] * 4)
    for a, b in zip(single.classify(images), single.decide(single.probabilities(images)), strict=True):
        assert a == b and a.labels is None and sum(a.top_scores) == pytest.approx(1.0)


@pytest.mark.parametrize(("data", "message"), [
    ({"multi_label": "yes"}, "multi_label: must be true or false"),
    ({"review_band": 0.5}, "review_band: applies only with multi_label: true"),
    ({"multi_label": True, "review_band": -1}, "review_band: must be a number ≥ 0"),
    ({"multi_label": True, "min_margin": 0.1}, "min_margin: is the single-label top-1 minus top-2 rule"),
])
def test_spec_keys_are_checked(data: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({"classes": ["a", "b"], **data}, "s.yaml")
    spec = parse_spec({"classes": ["a", "b"], "multi_label": True, "review_band": 2})
    assert spec.multi_label and spec.review_band == 2.0
    assert not parse_spec({"classes": ["a", "b"]}).multi_label


def _pipeline_scores(model: Path, paths: list[Path]) -> list[dict[str, float]]:
    from transformers import pipeline

    classifier = pipeline("zero-shot-image-classification", model=str(model), device="cpu")
    out = classifier([str(p) for p in paths], candidate_labels=CLASSES, hypothesis_template="a photo of a {}.")
    return [{r["label"]: r["score"] for r in rows} for rows in out]


@pytest.mark.parametrize("which", ["tiny_siglip", "tiny_siglip2"])
def test_siglip_multi_label_scores_equal_the_transformers_pipeline(tmp_path: Path, which: str,
                                                                   request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(which)
    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = []
    for i, size in enumerate([(64, 48), (48, 64), (40, 40), (100, 37), (52, 52)]):
        paths.append(folder / f"{i}.png")
        noise_image(20 + i, size).save(paths[-1])
    theirs = _pipeline_scores(model, paths)
    cut = float(np.median([s for ref in theirs for s in ref.values()]))  # so that some classes are labels
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"templates": ["a photo of a {}."], "classes": CLASSES, "multi_label": True,
                                    "threshold": cut}))
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(main, ["run", str(folder), "--labels", str(spec), "--out", str(out),
                                       "--model", str(model), "-q"])
    assert result.exit_code == 0, result.output
    ours = pd.read_parquet(out)
    assert pq.read_schema(out).field("labels").type == pa.list_(pa.string())
    for row, ref in zip(ours.itertuples(), theirs, strict=True):
        mine = dict(zip(row.top_labels, row.top_scores, strict=True))
        assert len(mine) == len(CLASSES)  # multi-label keeps every class's score by default
        assert max(abs(mine[c] - ref[c]) for c in CLASSES) <= 1e-4
        assert list(row.labels) == [c for c in row.top_labels if mine[c] >= cut]
    assert 0 < sum(len(v) for v in ours["labels"]) < len(CLASSES) * len(ours)


def _eval(table: Path, *extra: str) -> dict:
    truth = [] if "--truth" in extra else ["--truth", "colors"]
    result = CliRunner().invoke(main, ["eval", str(table), *truth, "--json", "-", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_tiny_shapes_pairs_default_thresholds_then_calibrated(shape_pairs: Path, tmp_path: Path) -> None:
    """The acceptance check: colour tags on two-shape images, zero-shot, then calibrated on a reviewed set."""
    table = pd.read_parquet(shape_pairs)
    assert max(abs(sum(s) - 1) for s in table["top_scores"]) > 0.5  # independent scores
    default = _eval(shape_pairs)
    assert default["micro_f1"] >= 0.70, default
    assert set(table["status"]) == {"accepted", "review"}
    reviewed = label_shape_pairs(tmp_path / "cal", 200, 8, tmp_path / "cal.parquet")
    calibrated = tmp_path / "calibrated.yaml"
    result = CliRunner().invoke(main, ["calibrate", str(reviewed), "--truth", "colors", "--target-precision", "0.9",
                                       "--per-class", "--write-spec", str(calibrated)])
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(calibrated.read_text())
    assert spec["multi_label"] is True and all("threshold" in c for c in spec["classes"])
    held_out = label_shape_pairs(tmp_path / "held", 160, 7, tmp_path / "held.parquet", calibrated)
    after = _eval(held_out)
    assert after["micro_precision"] >= 0.85 and after["micro_f1"] >= 0.75, after
    assert after["micro_f1"] > default["micro_f1"]


def test_csv_output_holds_json_arrays_and_evaluates_like_parquet(shape_pairs: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(COLOR_PAIRS_SPEC.format(model=TINY_SHAPES / "model"))
    out = tmp_path / "labels.csv"
    manifest = shape_pairs.parent / "images" / "manifest.csv"
    result = CliRunner().invoke(main, ["run", str(manifest), "--labels", str(spec), "--out", str(out), "-q",
                                       "--summary-json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    raw = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(raw.columns[:9]) == [*OUTPUT_SCHEMA.names, "labels"]  # then the manifest's columns
    parquet = pd.read_parquet(shape_pairs)
    assert [json.loads(v) for v in raw["labels"]] == [list(v) for v in parquet["labels"]]
    assert _eval(out, "--labels", str(spec)) == {**_eval(shape_pairs), "truth": "column 'colors'"}
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["multi_label"] is True and summary["scores"] == "mean-field softmax"
    members = {c: sum(c in v for v in parquet["labels"]) for c in ["red", "green", "blue", "yellow"]}
    assert {c: v["images"] for c, v in summary["classes"].items()} == members


def test_single_label_runs_keep_their_columns(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                              tiny_clip: Path) -> None:
    out = tmp_path / "single.parquet"
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out", str(out),
                                       "--model", str(tiny_clip), "-q", "--summary-json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert pq.read_schema(out).names == OUTPUT_SCHEMA.names
    assert all(len(v) == 3 for v in pd.read_parquet(out).query("status != 'error'")["top_labels"])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert "multi_label" not in summary and "review_band" not in summary


def test_python_api_multi_label(tiny_clip: Path) -> None:
    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog", "bird"], multi_label=True, cache=False)
    frame = labeler.label([noise_image(1), noise_image(2)])
    assert list(frame.columns) == [*OUTPUT_SCHEMA.names, "labels"]
    assert all(len(t) == 3 for t in frame["top_labels"])
    with pytest.raises(autolabel.UsageError, match="multi_label= go with classes="):
        autolabel.Labeler(model=str(tiny_clip), spec="x.yaml", multi_label=True)


def test_report_of_a_multi_label_run(shape_pairs: Path, tmp_path: Path) -> None:
    from .test_report import check

    out = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(shape_pairs), "--out", str(out), "--truth", "colors"])
    assert result.exit_code == 0, result.output
    document = out.read_text()
    checker = check(document)
    assert {"summary", "galleries", "review", "label-counts", "per-class", "misclassified"} <= checker.ids
    table = pd.read_parquet(shape_pairs)
    counts = pd.Series([len(v) for v in table["labels"]]).value_counts()
    for k, v in counts.items():
        assert f"<tr><td>{k}</td><td>{v}</td>" in document
    assert "multi-label-queue" in checker.ids
    review = table[table.status == "review"].sort_values(["margin", "path"], kind="stable")
    queue = json.loads(document.split("id='rq-data'>")[1].split("</script>")[0])["rows"]
    assert [r[0] for r in queue] == list(review["path"])
    assert [json.loads(r[2]) for r in queue] == [list(v) for v in review["labels"]]


def test_examples_with_label_lists_adapt_the_scores_and_keep_the_human_lists(tmp_path: Path) -> None:
    """Colour tags under names the text tower cannot know: reviewed label lists teach them (multi-hot adapter)."""
    from make_images import make_pairs

    names = {"red": "blorp", "green": "zib", "blue": "quux", "yellow": "frob"}
    frames = {}
    for part, n, seed in (("train", 48, 21), ("test", 96, 22)):
        frame = pd.read_csv(make_pairs(tmp_path / part, n=n, seed=seed))
        frame["path"] = [str(tmp_path / part / p) for p in frame["path"]]
        frame["tags"] = [json.dumps([names[c] for c in json.loads(v)]) for v in frame["colors"]]
        frames[part] = frame
    examples = tmp_path / "reviewed.csv"
    frames["train"][["path", "tags"]].rename(columns={"tags": "reviewed_label"}).to_csv(examples, index=False)
    source = tmp_path / "source.csv"
    pd.concat([frames["test"], frames["train"].head(4)])[["path", "tags"]].to_csv(source, index=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"model": str(TINY_SHAPES / "model"), "templates": ["a {label} object."],
                                    "classes": list(names.values()), "multi_label": True}))

    def run(out: str, *extra: str) -> dict:
        result = CliRunner().invoke(main, ["run", str(source), "--labels", str(spec), "--out", str(tmp_path / out),
                                           "--summary-json", str(tmp_path / f"{out}.json"), "-q", *extra])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / f"{out}.json").read_text())

    run("zero.parquet")
    summary = run("adapted.parquet", "--examples", str(examples))
    assert summary["learned"]["method"] == "tip-adapter (multi-hot)" and summary["learned"]["used"]
    assert summary["learned"]["examples"] == 48 and summary["status"]["reviewed"] == 4
    zero, adapted = _eval(tmp_path / "zero.parquet", "--truth", "tags"), _eval(tmp_path / "adapted.parquet",
                                                                                "--truth", "tags")
    assert zero["n"] == 96 + 4 and adapted["n"] == 96  # reviewed rows are no machine prediction
    assert adapted["micro_f1"] >= zero["micro_f1"] + 0.1, (zero["micro_f1"], adapted["micro_f1"])
    table = pd.read_parquet(tmp_path / "adapted.parquet")
    for row in table[table.status == "reviewed"].itertuples():
        assert sorted(row.labels) == sorted(json.loads(row.tags)) and row.label == row.labels[0]
        assert list(row.labels) == [c for c in row.top_labels if c in row.labels]  # the model's order
    bad = tmp_path / "bad.csv"
    bad.write_text(f'path,reviewed_label\n{frames["train"].path[0]},"[""blorp"", ""red""]"\n')
    refused = CliRunner().invoke(main, ["run", str(source), "--labels", str(spec), "--out",
                                        str(tmp_path / "x.parquet"), "--examples", str(bad)])
    assert refused.exit_code == 2 and "'red'" in refused.output and not (tmp_path / "x.parquet").exists()


def test_report_galleries_take_each_class_score_also_after_error_rows(shape_pairs: Path) -> None:
    from autolabel.review.report import class_rows
    from autolabel.table.results import load_results

    results = load_results(shape_pairs)
    frame = results.frame
    frame.loc[0, ["status", "label", "error"]] = ["error", None, "broken"]
    frame.at[0, "labels"], frame.at[0, "top_labels"], frame.at[0, "top_scores"] = [], [], []
    ok = frame[frame["status"] != "error"]
    rows, histograms = class_rows(results, ok)
    for c in ["red", "green", "blue", "yellow"]:
        expected = {p: dict(zip(t, s, strict=True))[c] for p, t, s, labels in
                    ok[["path", "top_labels", "top_scores", "labels"]].itertuples(index=False) if c in labels}
        assert dict(zip(rows[c]["path"], rows[c]["score"], strict=True)) == expected
        assert list(rows[c]["score"]) == sorted(expected.values(), reverse=True)
        assert len(histograms[c]) == len(ok)


def test_review_editor_toggles_labels_of_a_multi_label_row(shape_pairs: Path, tmp_path: Path) -> None:
    from .test_report import _driver, download_corrections

    shape_pairs = Path(shutil.copy(shape_pairs, tmp_path / "labels.parquet"))  # the fixture is shared: merge a copy
    page = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", str(shape_pairs), "--out", str(page)]).exit_code == 0
    data = json.loads(page.read_text().split("id='rq-data'>")[1].split("</script>")[0])
    assert data["multi"] is True
    rows, labels = data["rows"], data["labels"]
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _driver(downloads, tmp_path / "profile")
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        driver.get(page.as_uri())
        body = driver.find_element(By.TAG_NAME, "body")
        driver.find_element(By.CSS_SELECTOR, "#rq-0 .meta").click()
        body.send_keys("1", "2", Keys.ENTER)  # row 0: toggle its first two candidates, then on
        body.send_keys(Keys.ENTER)  # row 1: keep the model's list
        target = download_corrections(driver, downloads)
    finally:
        driver.quit()
    first = set(json.loads(rows[0][2])) ^ {labels[rows[0][5][0]], labels[rows[0][5][1]]}
    got = pd.read_csv(target)
    assert [json.loads(v) for v in got.reviewed_label] == [[c for c in labels if c in first], json.loads(rows[1][2])]
    assert list(got.path) == [rows[0][1], rows[1][1]]
    merged = CliRunner().invoke(main, ["import-review", str(target), "--into", str(shape_pairs)])
    assert merged.exit_code == 0, merged.output
    table = pd.read_parquet(shape_pairs).set_index("path")
    assert sorted(table.loc[rows[0][0], "reviewed_label"]) == sorted(first)


def test_eval_says_how_many_accepted_label_sets_are_complete(shape_pairs: Path) -> None:
    accepted = _eval(shape_pairs)["accepted"]
    printed = CliRunner().invoke(main, ["eval", str(shape_pairs), "--truth", "colors"])
    assert printed.exit_code == 0, printed.output
    assert (f"label precision {100 * accepted['precision']:.1f}%, complete and exact label sets "
            f"{100 * accepted['subset_accuracy']:.1f}%)") in printed.stdout
    assert accepted["subset_accuracy"] < accepted["precision"]  # precise tags can still miss some
