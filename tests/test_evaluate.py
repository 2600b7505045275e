"""eval, calibrate and diff: numbers equal scikit-learn's / an independent computation; CLI exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from autolabel.cli import main
from autolabel.core.errors import SourceError, UsageError
from autolabel.core.spec import load_spec
from autolabel.table.results import Results, load_results
from autolabel.table.truth import resolve_truth
from autolabel.task.metrics import Truth, shortest_between, spec_with_thresholds, wilson_interval
from autolabel.task.single import calibrate, diff, evaluate

from .conftest import finishes

CLASSES = ["cat", "dog", "bird", "fish"]


def make_results(pred: list[str | None], status: list[str] | None = None, conf: list[float] | None = None,
                 classes: list[str] = CLASSES, top_k: int = 3, seed: int = 0, min_margin: float = 0.0) -> Results:
    rng = np.random.default_rng(seed)
    n = len(pred)
    status = status or ["accepted" if rng.random() < 0.7 else "review" for _ in range(n)]
    conf = conf if conf is not None else list(rng.uniform(0.3, 1.0, n))
    tops = []
    for p in pred:
        others = [c for c in rng.permutation(classes) if c != p]
        tops.append(([p] + others)[:top_k] if p else [])
    frame = pd.DataFrame({
        "path": [f"dir{i % 3}/img{i}.jpg" for i in range(n)], "label": pred,
        "confidence": [c if p else None for c, p in zip(conf, pred, strict=True)],
        "margin": [c / 2 if p else None for c, p in zip(conf, pred, strict=True)],
        "status": [s if p else "error" for s, p in zip(status, pred, strict=True)],
        "top_labels": tops, "top_scores": [[0.5] * len(t) for t in tops],
        "error": [None if p else "broken" for p in pred],
    })
    meta = {"classes": classes, "thresholds": dict.fromkeys(classes, 0.5), "min_margin": min_margin}
    return Results(path=Path("t.parquet"), frame=frame, classes=list(classes), metadata=meta)


@pytest.mark.parametrize("seed", range(6))
def test_metrics_equal_sklearn_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    truth = list(rng.choice(CLASSES, n, p=[0.5, 0.3, 0.15, 0.05]))
    pred = [t if rng.random() < 0.7 else str(rng.choice(CLASSES)) for t in truth]
    results = make_results(pred, seed=seed)
    m = evaluate(results, Truth(truth, "t"))
    assert m["n"] == n
    assert m["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    p, r, f, s = precision_recall_fscore_support(truth, pred, labels=CLASSES, zero_division=0)
    for i, c in enumerate(CLASSES):
        row = m["per_class"][c]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[i], r[i], f[i], s[i]))
    for avg in ("macro", "weighted"):  # averaged over the classes the sample has, as scikit-learn does by default
        ap, ar, af, _ = precision_recall_fscore_support(truth, pred, average=avg, zero_division=0)
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx((ap, ar, af))
    assert m["confusion"]["matrix"] == confusion_matrix(truth, pred, labels=CLASSES).tolist()
    tops = results.frame["top_labels"]
    assert m["top_k_accuracy"] == pytest.approx(np.mean([t in list(k) for t, k in zip(truth, tops, strict=True)]))
    accepted = results.frame["status"] == "accepted"
    correct = np.asarray(truth) == np.asarray(pred)
    assert m["accepted"]["n"] == accepted.sum()
    assert m["accepted"]["coverage"] == pytest.approx(accepted.mean())
    assert m["accepted"]["precision"] == pytest.approx(correct[accepted.to_numpy()].mean())
    assert m["review_share"] == pytest.approx(1 - accepted.mean())


def test_edge_cases_match_sklearn_and_exclusions_are_counted() -> None:
    # "fish" never predicted and never true; "bird" predicted but never true; one error row; one missing truth;
    # one truth outside the spec.
    pred = ["cat", "cat", "dog", "bird", None, "dog", "cat", "dog"]
    truth = ["cat", "dog", "dog", "cat", "cat", None, "zebra", "dog"]
    m = evaluate(make_results(pred), Truth(truth, "t"))
    kept_t, kept_p = ["cat", "dog", "dog", "cat", "dog"], ["cat", "cat", "dog", "bird", "dog"]
    assert m["n"] == 5
    assert m["excluded"] == {"error": 1, "reviewed": 0, "no_truth": 1, "unknown_truth": 1,
                             "unknown_truth_labels": {"zebra": 1}, "total": 3}
    p, r, f, _ = precision_recall_fscore_support(kept_t, kept_p, average="macro", zero_division=0)  # not over fish
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx((p, r, f))
    assert m["per_class"]["fish"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["most_confused"][0] == {"truth": "cat", "predicted": "bird", "count": 1}
    everything_right = evaluate(make_results(["cat", "dog"]), Truth(["cat", "dog"], "t"))
    assert everything_right["accuracy"] == 1.0
    nothing = evaluate(make_results([None, None]), Truth(["cat", "dog"], "t"))
    assert nothing["n"] == 0 and nothing["accuracy"] == 0.0 and nothing["excluded"]["error"] == 2


def test_truth_sources(tmp_path: Path) -> None:
    results = make_results(["cat", "dog", "bird"])
    results.frame["truth"] = ["cat", "", "bird"]
    assert resolve_truth(results, "truth").labels == ["cat", None, "bird"]
    assert resolve_truth(results, "folder").labels == ["dir0", "dir1", "dir2"]
    mapping = tmp_path / "truth.csv"
    pd.DataFrame({"path": ["dir2/img2.jpg", "dir0/img0.jpg"], "label": ["fish", "cat"]}).to_csv(mapping, index=False)
    assert resolve_truth(results, str(mapping)).labels == ["cat", None, "fish"]
    with pytest.raises(UsageError, match="not a column"):
        resolve_truth(results, "nope")


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(95, 100)
    assert lo == pytest.approx(0.8882, abs=1e-4) and hi == pytest.approx(0.9785, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _simulated(n: int, seed: int) -> tuple[Results, list[str]]:
    """A calibrated classifier: a prediction with confidence c is right with probability c."""
    rng = np.random.default_rng(seed)
    truth = list(rng.choice(CLASSES, n))
    conf = rng.uniform(0.25, 1.0, n)
    pred = [t if rng.random() < c else str(rng.choice([x for x in CLASSES if x != t]))
            for t, c in zip(truth, conf, strict=True)]
    return make_results(pred, conf=list(conf), seed=seed), truth


def test_calibrate_reaches_target_on_held_out_split() -> None:
    results, truth = _simulated(20000, seed=3)
    half = 10000
    fit = Results(path=results.path, frame=results.frame.iloc[:half].reset_index(drop=True), classes=CLASSES,
                  metadata=results.metadata)
    chosen = calibrate(fit, Truth(truth[:half], "t"), target=0.95, per_class=True)
    t = chosen["global"]["threshold"]
    assert chosen["global"]["precision"] >= 0.95 and chosen["global"]["rows"] == half
    lo, hi = chosen["global"]["precision_ci95"]
    assert lo <= chosen["global"]["precision"] <= hi
    held = results.frame.iloc[half:]
    accepted = held["confidence"].to_numpy() >= t
    correct = held["label"].to_numpy() == np.asarray(truth[half:])
    assert correct[accepted].mean() >= 0.94  # held-out precision at the target, up to sampling noise
    assert abs(accepted.mean() - chosen["global"]["coverage"]) < 0.03
    # For a calibrated model, P(correct | c ≥ t) = (1 + t) / 2 ≥ 0.95 gives t ≈ 0.9.
    assert 0.87 < t < 0.93
    fit_conf, fit_label = fit.frame["confidence"].to_numpy(), fit.frame["label"].to_numpy()
    fit_correct = fit_label == np.asarray(truth[:half])
    for c in CLASSES:
        mine = (fit_label == c) & (fit_conf >= chosen["per_class"][c]["threshold"])
        assert fit_correct[mine].mean() == pytest.approx(chosen["per_class"][c]["precision"])
        assert chosen["per_class"][c]["precision"] >= 0.95
        assert mine.sum() == chosen["per_class"][c]["accepted"]


def test_calibrate_refuses_small_samples_and_unreachable_targets() -> None:
    results, truth = _simulated(29, seed=1)
    with pytest.raises(UsageError, match="only 29 labelled rows"):
        calibrate(results, Truth(truth, "t"), 0.9)
    results, truth = _simulated(200, seed=1)
    out = calibrate(results, Truth(truth, "t"), 1.0, per_class=True, min_class_rows=100)
    chosen = out["global"]
    conf = results.frame["confidence"].to_numpy()
    correct = results.frame["label"].to_numpy() == np.asarray(truth)
    accepted = conf >= chosen["threshold"]
    assert chosen["precision"] == 1.0 and correct[accepted].all() and accepted.sum() == chosen["accepted"]
    assert not correct[conf == conf[~accepted].max()].all()  # the next cut down is below the target
    assert all(v["threshold"] is None and "need 100" in v["reason"] for v in out["per_class"].values())


def test_spec_written_back_keeps_everything_else() -> None:
    raw = {"model": "m", "templates": ["a {label}"], "classes": ["cat", {"name": "dog", "synonyms": ["puppy"]}],
           "min_margin": 0.1}
    cal = {"global": {"threshold": 0.61234567}, "per_class": {"dog": {"threshold": 0.8}, "cat": {"threshold": None}}}
    spec = spec_with_thresholds(raw, cal)
    assert spec == {"model": "m", "templates": ["a {label}"], "min_margin": 0.1, "threshold": 0.61234567,
                    "classes": ["cat", {"name": "dog", "synonyms": ["puppy"], "threshold": 0.8}]}


def test_spec_written_back_puts_the_other_threshold_under_other() -> None:
    raw = {"classes": ["cat", "dog"], "other": "none of these"}
    cal = {"global": {"threshold": None},
           "per_class": {"none of these": {"threshold": 0.7}, "cat": {"threshold": None}}}
    assert spec_with_thresholds(raw, cal)["other"] == {"name": "none of these", "threshold": 0.7}
    assert spec_with_thresholds(raw, {"global": {}, "per_class": {}})["other"] == "none of these"


def test_diff_reports_reviewed_rows_apart_from_flips() -> None:
    old = make_results(["cat", "dog", "dog", "bird"])
    new = make_results(["cat", "cat", "bird", "bird"])
    new.frame.loc[1, "status"] = "reviewed"  # a person said cat where the model had said dog
    out = diff(old, new)
    assert out["compared"] == 3 and out["flips"] == 1  # dog→bird is the model's; dog→cat was a person
    assert out["reviewed"] == {"old": 0, "new": 1, "overruled": 1}


def test_diff_counts_and_exit_codes(tmp_path: Path) -> None:
    old = make_results(["cat", "dog", "dog", None, "bird", "cat"])
    new = make_results(["cat", "cat", "dog", "fish", None, "cat"])
    new.frame.loc[5, "path"] = "elsewhere.jpg"
    out = diff(old, new)
    assert out["matched"] == 5 and out["only_old"] == 1 and out["only_new"] == 1
    assert out["compared"] == 3 and out["flips"] == 1 and out["flip_rate"] == pytest.approx(1 / 3)
    assert out["flips_by_class"] == {"dog": {"total": 1, "to": {"cat": 1}}}
    assert out["newly_errored"] == 1 and out["recovered"] == 1
    for name, res in (("old", old), ("new", new)):
        res.frame.to_parquet(tmp_path / f"{name}.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text("templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    args = ["diff", str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet"), "--labels", str(spec)]
    assert CliRunner().invoke(main, [*args, "--max-flip-rate", "0.5"]).exit_code == 0
    failed = CliRunner().invoke(main, [*args, "--max-flip-rate", "0.3", "--json", str(tmp_path / "d.json")])
    assert failed.exit_code == 1 and "exceeds --max-flip-rate 0.3" in failed.output
    assert json.loads((tmp_path / "d.json").read_text())["flips"] == 1


def test_eval_and_calibrate_cli_on_a_real_run(tmp_path: Path, labels_yaml: Path, tiny_clip: Path) -> None:
    from .conftest import noise_image

    images = tmp_path / "imgs"
    images.mkdir()
    rows = []
    for i in range(40):
        noise_image(i, (40, 40)).save(images / f"{i}.png")
        rows.append({"path": f"{i}.png", "truth": ["cat", "dog", "bird"][i % 3] if i % 10 and i < 28 else ""})
    pd.DataFrame(rows).to_csv(images / "m.csv", index=False)
    for out in ("o.parquet", "o.csv"):
        r = CliRunner().invoke(main, ["run", str(images / "m.csv"), "--labels", str(labels_yaml), "--out",
                                      str(tmp_path / out), "--model", str(tiny_clip), "-q"])
        assert r.exit_code == 0, r.output
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "o.parquet"), "--truth", "truth", "--json", "-"])
    assert result.exit_code == 0
    metrics = json.loads(result.stdout)
    assert metrics["n"] == 25 and metrics["excluded"]["no_truth"] == 15
    from_sidecar = CliRunner().invoke(main, ["eval", str(tmp_path / "o.csv"), "--truth", "truth", "--json", "-"])
    assert json.loads(from_sidecar.stdout)["accuracy"] == metrics["accuracy"]  # the CSV's sidecar has its classes
    (tmp_path / "o.csv.autolabel.json").unlink()
    csv_needs_spec = CliRunner().invoke(main, ["eval", str(tmp_path / "o.csv"), "--truth", "truth"])
    assert csv_needs_spec.exit_code == 2 and "--labels" in csv_needs_spec.output
    with_spec = CliRunner().invoke(main, ["eval", str(tmp_path / "o.csv"), "--truth", "truth", "--labels",
                                          str(labels_yaml), "--json", "-"])
    assert json.loads(with_spec.stdout)["accuracy"] == metrics["accuracy"]
    small = CliRunner().invoke(main, ["calibrate", str(tmp_path / "o.parquet"), "--truth", "truth", "-p", "0.9"])
    assert small.exit_code == 2 and "need at least 30" in small.output
    loaded = load_results(tmp_path / "o.parquet")
    loaded.frame = pd.concat([loaded.frame] * 2, ignore_index=True)
    loaded.frame.to_parquet(tmp_path / "big.parquet")
    written, result_json = tmp_path / "calibrated.yaml", tmp_path / "calibration.json"
    ok = CliRunner().invoke(main, ["calibrate", str(tmp_path / "big.parquet"), "--truth", "truth", "-p", "0.2",
                                   "--labels", str(labels_yaml), "--write-spec", str(written), "--json",
                                   str(result_json)])
    assert ok.exit_code == 0, ok.output
    spec = yaml.safe_load(written.read_text())
    original = yaml.safe_load(labels_yaml.read_text())
    chosen = json.loads(result_json.read_text())["global"]
    assert spec == {**original, "threshold": chosen["threshold"]}  # per-class thresholds (bird: 0.2) kept
    usable = loaded.frame[loaded.frame["truth"].fillna("") != ""]
    assert (usable["confidence"] >= spec["threshold"]).sum() == chosen["accepted"]


def _table(tmp_path: Path, results: Results, truth: list[str], spec_text: str) -> tuple[Path, Path]:
    frame = results.frame.copy()
    frame["truth"] = truth
    frame.to_parquet(tmp_path / "labels.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    return tmp_path / "labels.parquet", spec


def test_written_thresholds_accept_exactly_the_rows_calibrate_promised(tmp_path: Path) -> None:
    """A cut at 0.61234567 must not be rounded up to 0.612346 (its own rows would flip to review) nor down past
    the next confidence below it, labelled or not (that row would be accepted)."""
    n = 60
    conf = [0.9] * 30 + [0.61234567] * 5 + [0.6123] + [0.5] * (n - 36)
    pred = ["cat"] * n
    truth = ["cat"] * 35 + [None] + ["dog"] * (n - 36)  # the row at 0.6123 has no truth
    results = make_results(pred, status=["review"] * n, conf=conf)
    table, spec = _table(tmp_path, results, truth, "templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    written = tmp_path / "calibrated.yaml"
    out = CliRunner().invoke(main, ["calibrate", str(table), "--truth", "truth", "-p", "1.0", "--labels", str(spec),
                                    "--write-spec", str(written), "--json", "-"])
    assert out.exit_code == 0, out.output
    promised = json.loads(out.stdout)["global"]
    threshold = load_spec(written).threshold
    assert threshold == promised["threshold"] == 0.61234  # the shortest decimal above 0.6123, at most the cut
    assert (np.asarray(conf) >= threshold).sum() == promised["accepted"] == 35


def test_shortest_between_keeps_the_rows_on_each_side() -> None:
    assert shortest_between(0.6123456, 0.61234567) == 0.61234567
    assert shortest_between(0.6123, 0.61234567) == 0.61234
    assert shortest_between(0.5, 0.91) == 0.9
    assert shortest_between(0.0, 0.05) == 0.05
    cut = 0.1 + 0.2  # 0.30000000000000004: no shorter decimal lies above 0.3
    assert shortest_between(0.3, cut) == cut


def test_write_spec_rewrites_a_relative_model_for_its_new_folder(tmp_path: Path) -> None:
    (tmp_path / "specs" / "models" / "tiny").mkdir(parents=True)
    results, truth = _simulated(200, seed=4)
    table, _ = _table(tmp_path, results, truth, "")
    spec = tmp_path / "specs" / "spec.yaml"
    spec.write_text("model: models/tiny\ntemplates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    written = tmp_path / "out" / "calibrated.yaml"
    out = CliRunner().invoke(main, ["calibrate", str(table), "--truth", "truth", "-p", "0.9", "--labels", str(spec),
                                    "--write-spec", str(written)])
    assert out.exit_code == 0, out.output
    assert yaml.safe_load(written.read_text())["model"] == "../specs/models/tiny"
    assert load_spec(written).model_location() == str(written.parent / "../specs/models/tiny")
    assert Path(load_spec(written).model_location()).resolve() == (tmp_path / "specs" / "models" / "tiny").resolve()


def test_diff_gate_fails_when_no_row_could_be_compared(tmp_path: Path) -> None:
    old = make_results(["cat", "dog"])
    new = make_results(["cat", "dog"])
    new.frame["path"] = ["other/1.jpg", "other/2.jpg"]
    old.frame.to_parquet(tmp_path / "old.parquet")
    new.frame.to_parquet(tmp_path / "new.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text("templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    result = CliRunner().invoke(main, ["diff", str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet"),
                                       "--labels", str(spec), "--max-flip-rate", "0.1"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "error: no rows to compare (0 paths in both tables, none labelled in both): --max-flip-rate cannot pass; "
        "check that OLD and NEW label the same images")


@pytest.mark.parametrize(("args", "message"), [
    (["diff", "{t}", "{t}", "--max-flip-rate", "-0.1"], "--max-flip-rate must be between 0 and 1, got -0.1"),
    (["calibrate", "{t}", "--truth", "truth", "-p", "0.9", "--min-class-rows", "-5"],
     "--min-class-rows must be 0 or more, got -5"),
    (["calibrate", "{t}", "--truth", "truth", "-p", "nan"], "--target-precision must be in (0, 1], got nan"),
])
def test_negative_and_nan_options_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    results, truth = _simulated(100, seed=2)
    table, spec = _table(tmp_path, results, truth, "templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    result = CliRunner().invoke(main, [a.format(t=table) for a in args] + ["--labels", str(spec)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n" and result.stdout == ""


def test_tables_go_to_stdout_unless_the_json_does(tmp_path: Path) -> None:
    results, truth = _simulated(100, seed=2)
    table, spec = _table(tmp_path, results, truth, "templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    for command in (["eval", str(table), "--truth", "truth"],
                    ["calibrate", str(table), "--truth", "truth", "-p", "0.8"], ["diff", str(table), str(table)]):
        plain = CliRunner().invoke(main, [*command, "--labels", str(spec)])
        assert plain.exit_code == 0 and plain.stderr == ""
        assert plain.stdout.strip() and "Traceback" not in plain.stdout
        as_json = CliRunner().invoke(main, [*command, "--labels", str(spec), "--json", "-"])
        assert json.loads(as_json.stdout) and as_json.stderr == plain.stdout


def test_class_names_print_as_written(tmp_path: Path) -> None:
    """Rich would read "[/b]" as markup (and fail on the unmatched closing tag): tables print data as data."""
    classes = ["[/b]", "[red]dog"]
    results = make_results(["[/b]", "[red]dog", "[/b]"], classes=classes)
    table, spec = _table(tmp_path, results, ["[/b]", "[red]dog", "[red]dog"],
                         'templates: ["{label}"]\nclasses: ["[/b]", "[red]dog"]\n')
    result = CliRunner().invoke(main, ["eval", str(table), "--truth", "truth", "--labels", str(spec)])
    assert result.exit_code == 0, result.output
    assert "│ [/b]" in result.stdout and "│ [red]dog" in result.stdout
    assert "most confused: [red]dog→[/b] (1)" in result.stdout


@pytest.mark.parametrize("option", ["--json", "--write-spec"])
@pytest.mark.parametrize(("where", "message"), [
    ("{tmp}/file.txt/out", "{tmp}/file.txt is a file, not a folder; choose another location"),
    ("/proc/out", "cannot write there"),
    ("{tmp}/labels.parquet", "is {tmp}/labels.parquet, an input of this command; write to another file"),
])
def test_unwritable_outputs_are_refused_before_any_work(tmp_path: Path, option: str, where: str,
                                                         message: str) -> None:
    results, truth = _simulated(100, seed=2)
    table, spec = _table(tmp_path, results, truth, "templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    (tmp_path / "file.txt").write_text("user data")
    target = where.format(tmp=tmp_path)
    result = CliRunner().invoke(main, ["calibrate", str(table), "--truth", "truth", "-p", "0.8", "--labels", str(spec),
                                       option, target])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {option} {target}: ") and message.format(tmp=tmp_path) in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert (tmp_path / "file.txt").read_text() == "user data" and pd.read_parquet(table).shape[0] == 100


def test_a_fifo_truth_file_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "truth.csv")
    outcome = finishes(lambda: resolve_truth(make_results(["cat"]), str(tmp_path / "truth.csv")))
    assert isinstance(outcome, SourceError)
    assert str(outcome) == (f"--truth {tmp_path / 'truth.csv'}: cannot read it (not a regular file (a FIFO); only "
                            "regular files are read)")


def test_eval_with_no_scorable_row_is_one_line_exit_2(tmp_path: Path) -> None:
    results = make_results(["cat", "dog", None])
    results.frame.to_parquet(tmp_path / "t.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text("templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "t.parquet"), "--labels", str(spec), "--truth",
                                       "folder", "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: --truth folder: no row of {tmp_path / 't.parquet'} can be scored (1 error rows, 0 reviewed by "
        "people, 0 without truth, 2 with a truth outside the spec); check the truth column or file")
    assert not (tmp_path / "m.json").exists()


def test_write_spec_with_an_unreachable_target_writes_nothing_and_exits_1(tmp_path: Path) -> None:
    n = 40
    results = make_results(["cat"] * n, status=["review"] * n, conf=[0.9 - i / 100 for i in range(n)])
    truth = ["dog"] + ["cat"] * (n - 1)  # the most confident row is wrong: precision 1.0 is out of reach
    table, spec = _table(tmp_path, results, truth, "templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    written = tmp_path / "calibrated.yaml"
    out = CliRunner().invoke(main, ["calibrate", str(table), "--truth", "truth", "-p", "1.0", "--labels", str(spec),
                                    "--write-spec", str(written)])
    assert out.exit_code == 1
    assert out.stderr.splitlines()[-1] == (f"error: the target precision 1 is not reachable on this sample (best "
                                           f"97.5%); {written} was not written — label more rows, or lower "
                                           "--target-precision")
    assert not written.exists()


def test_write_spec_far_from_the_model_names_it_absolutely(tmp_path: Path) -> None:
    from autolabel.core.spec import parse_spec

    (tmp_path / "specs" / "models" / "tiny").mkdir(parents=True)
    spec = parse_spec({"model": "models/tiny", "classes": ["cat", "dog"]}, str(tmp_path / "specs" / "spec.yaml"))
    assert spec.model_for(tmp_path / "out") == "../specs/models/tiny"
    assert spec.model_for("/") == str(tmp_path / "specs" / "models" / "tiny")  # only the root in common


def test_top_k_counts_a_row_labelled_other_by_its_label() -> None:
    results = make_results(["cat", "dog", "cat"], classes=["cat", "dog", "none"], top_k=2)
    results.frame.loc[2, "label"] = "none"  # `other`: top_labels list only the real classes
    results.frame.at[2, "top_labels"] = ["cat", "dog"]
    metrics = evaluate(results, Truth(["cat", "dog", "none"], "t"))
    assert metrics["accuracy"] == 1.0 and metrics["top_k_accuracy"] == 1.0


def test_write_spec_replaces_only_a_spec_it_wrote(tmp_path: Path) -> None:
    results, truth = _simulated(200, seed=4)
    table, spec = _table(tmp_path, results, truth, "templates: ['{label}']\nclasses: [cat, dog, bird, fish]\n")
    calibrate = ["calibrate", str(table), "--truth", "truth", "-p", "0.9", "--labels", str(spec)]
    (tmp_path / "notes.txt").write_text("my notes\n")
    foreign = CliRunner().invoke(main, [*calibrate, "--write-spec", str(tmp_path / "notes.txt")])
    assert foreign.exit_code == 2
    assert foreign.stderr == (f"error: --write-spec {tmp_path / 'notes.txt'}: exists and is not a file this command "
                              "wrote; choose another file (nothing you wrote is replaced)\n")
    assert (tmp_path / "notes.txt").read_text() == "my notes\n"
    for _ in range(2):  # a spec calibrate wrote may be written again
        again = CliRunner().invoke(main, [*calibrate, "--write-spec", str(tmp_path / "calibrated.yaml")])
        assert again.exit_code == 0, again.output
    assert (tmp_path / "calibrated.yaml").read_text().startswith("# written by autolabel calibrate --write-spec")
    assert load_spec(tmp_path / "calibrated.yaml").classes[0].name == "cat"
