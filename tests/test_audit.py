"""Audit parts alone, against hand computations: neighbours, pixel rule, groups, confident learning, outliers."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from autolabel.audit.duplicates import Edge, duplicate_findings, exact_edges
from autolabel.audit.findings import Finding, load_findings, write_findings
from autolabel.audit.label_issues import class_thresholds, find_label_issues
from autolabel.audit.neighbours import SearchPlan, nearest
from autolabel.audit.outliers import find_outliers, knn_distance
from autolabel.audit.pixels import PixelRule, base_thumbnail, pixel_distance
from autolabel.audit.summary import class_balance
from autolabel.core.errors import UsageError


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(x: np.ndarray, k: int) -> np.ndarray:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return -np.sort(-sims, axis=1)[:, :k]


# --- neighbours ------------------------------------------------------------------------------------


def test_exact_search_equals_brute_force() -> None:
    x = unit_rows(300, 16, 0)
    found = nearest(x, 4)
    assert np.allclose(found.similarity, brute_force(x, 4), atol=1e-6)
    assert (found.index != np.arange(300)[:, None]).all()


def test_cells_probed_everywhere_equal_exact() -> None:
    x = unit_rows(400, 16, 1)
    found = nearest(x, 3, SearchPlan(cells=7, probes=7, sample=400))
    assert np.allclose(found.similarity, brute_force(x, 3), atol=1e-6)


def test_cells_find_planted_near_pairs_with_few_probes() -> None:
    x = unit_rows(2000, 32, 2)
    x[1000:1050] = x[:50] + 0.05 * unit_rows(50, 32, 3)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pairs = {tuple(p) for p in nearest(x, 4, SearchPlan(cells=40, probes=4, sample=2000)).pairs(0.95).tolist()}
    assert pairs == {(i, 1000 + i) for i in range(50)}


def test_pairs_are_unique_and_sorted() -> None:
    x = np.array([[1, 0], [0.999, 0.0447], [0, 1]], np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert nearest(x, 2).pairs(0.99).tolist() == [[0, 1]]


# --- pixels ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes() -> list[Image.Image]:
    from shapes import draw_shape

    rng = random.Random(5)
    return [draw_shape("red", "circle", rng, (120, 96)) for _ in range(6)]


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_same_pixels_have_distance_zero(shapes) -> None:
    assert pixel_distance(base_thumbnail(shapes[0]), base_thumbnail(shapes[0].copy())) == (0.0, False)


@pytest.mark.parametrize("change", ["jpeg60", "resize80", "brighter10"])
def test_reencodes_resizes_and_tone_changes_match(shapes, change: str) -> None:
    image = shapes[1]
    other = {"jpeg60": lambda: jpeg(image, 60),
             "resize80": lambda: image.resize((96, 77), Image.Resampling.BICUBIC),
             "brighter10": lambda: Image.eval(image, lambda v: min(255, int(v * 1.1)))}[change]()
    distance, cropped = pixel_distance(base_thumbnail(image), base_thumbnail(other))
    assert distance <= 1.0 and not cropped


def test_distinct_pictures_of_one_class_do_not_match(shapes) -> None:
    thumbs = [base_thumbnail(s) for s in shapes]
    assert min(pixel_distance(thumbs[i], thumbs[j])[0] for i in range(6) for j in range(i + 1, 6)) > 1.0


def test_a_small_crop_matches_only_with_the_crop_search(shapes) -> None:
    image = shapes[2]
    crop = image.crop((6, 5, 120, 96))  # 5% off the left and top
    a, b = base_thumbnail(image), base_thumbnail(crop)
    assert pixel_distance(a, b, PixelRule(crops=False))[0] > 1.0
    distance, cropped = pixel_distance(a, b)
    assert distance <= 1.0 and cropped


# --- duplicate groups ------------------------------------------------------------------------------


def test_exact_edges_join_each_copy_to_the_first() -> None:
    edges = exact_edges(["h1", "h2", "h1", None, "h1", "h2"])
    assert [(e.a, e.b, e.score) for e in edges] == [(0, 2, 1.0), (0, 4, 1.0), (1, 5, 1.0)]


def test_groups_keep_one_spanning_edge_per_image_strongest_first() -> None:
    paths = ["a", "b", "c", "d", "e"]
    edges = [Edge(0, 1, 0.9, "x"), Edge(1, 2, 0.8, "y"), Edge(0, 2, 0.7, "z"), Edge(3, 4, 1.0, "exact")]
    found = duplicate_findings(paths, edges)
    assert [(f.path, f.other_path, f.group, f.score) for f in found] == [
        ("a", "b", 1, 0.9), ("b", "c", 1, 0.8), ("d", "e", 2, 1.0)]
    assert found[0].detail == "x · group 1 (3 images): a, b, c"


def test_pairs_with_an_unknown_split_are_not_leakage() -> None:
    found = duplicate_findings(["a", "b"], [Edge(0, 1, 0.9, "x")], splits=["train", None])
    assert [f.kind for f in found] == ["duplicate"]


def test_pairs_across_splits_are_also_leakage() -> None:
    found = duplicate_findings(["a", "b", "c"], [Edge(0, 1, 0.9, "x"), Edge(1, 2, 0.8, "y")],
                               splits=["train", "train", "test"])
    assert [(f.kind, f.path, f.other_path) for f in found] == [
        ("duplicate", "a", "b"), ("duplicate", "b", "c"), ("leakage", "b", "c")]
    assert "split 'train' and split 'test'" in found[2].detail


def test_whole_frame_views_read_the_integral_at_grid_points_bit_for_bit(shapes) -> None:
    from autolabel.audit import pixels

    for image in shapes:
        integral = base_thumbnail(image)
        for side in (8, 16):
            assert np.array_equal(pixels._whole(integral, side), pixels._views(integral, side, pixels._WHOLE))


def copies_of(shapes: list[Image.Image], per: int) -> list[np.ndarray]:
    """`per` near-copies (JPEG q60–q90 re-encodes, 80–95% resizes) of each of the pictures, interleaved."""
    out = []
    for k in range(per):
        for image in shapes:
            copy = jpeg(image, 60 + 5 * (k % 7)) if k % 2 else image.resize(
                (int(image.width * (0.8 + 0.03 * (k % 6))), int(image.height * (0.8 + 0.03 * (k % 6)))))
            out.append(base_thumbnail(copy))
    return out


def groups_of(edges) -> set[frozenset[int]]:
    findings = duplicate_findings([str(i) for i in range(1000)], edges)
    members: dict[int, set[int]] = {}
    for f in findings:
        members.setdefault(f.group, set()).update((int(f.path), int(f.other_path)))
    return {frozenset(m) for m in members.values()}


def test_a_huge_candidate_group_is_checked_against_leaders_with_few_checks(shapes, monkeypatch) -> None:
    import autolabel.audit.duplicates as dup
    from autolabel.audit import pixels

    thumbs = copies_of(shapes[:3], 12)  # 36 images: row r shows picture r % 3
    every = np.array([(a, b) for a in range(36) for b in range(a + 1, 36)])  # all 630 pairs are candidates
    checked, made = [], []
    real = pixels.pixel_distances
    monkeypatch.setattr(dup, "pixel_distances",
                        lambda pairs, rule=None: checked.append(len(pairs)) or real(pairs, rule))

    def thumbnail(row: int) -> np.ndarray:
        made.append(row)
        return thumbs[row]

    similarity = lambda a, b: 1.0 - abs(a - b) / 100  # noqa: E731 - nearer rows first
    monkeypatch.setattr(dup, "THUMB_BATCH", 8)
    exhaustive = dup.confirmed_edges(every, similarity, thumbnail, dup.DuplicateRule())
    assert sum(checked) == 630 and len(made) == 36
    checked.clear(), made.clear()
    monkeypatch.setattr(dup, "PAIRS_CAP", 100)
    by_leaders = dup.confirmed_edges(every, similarity, thumbnail, dup.DuplicateRule())
    truth = {frozenset(range(p, 36, 3)) for p in range(3)}
    assert groups_of(exhaustive) == groups_of(by_leaders) == truth
    assert len(by_leaders) == 33 and all(e.a % 3 == e.b % 3 for e in by_leaders)  # one edge per joined image
    assert sum(checked) <= dup.LEADERS_TRIED * 36 and len(made) == 36  # each thumbnail made once


def test_small_groups_are_checked_pair_by_pair_in_batches(shapes, monkeypatch) -> None:
    import autolabel.audit.duplicates as dup

    thumbs = copies_of(shapes[:4], 2)  # rows r and r + 4 show one picture
    pairs = np.array([(0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3)])
    monkeypatch.setattr(dup, "THUMB_BATCH", 2)
    groups = dup.candidate_groups(pairs)
    assert [g.tolist() for g in groups] == [[[0, 4], [1, 5], [0, 1]], [[2, 6], [3, 7], [2, 3]]]
    edges = dup.confirmed_edges(pairs, lambda a, b: 0.99, thumbs.__getitem__, dup.DuplicateRule())
    assert sorted((e.a, e.b) for e in edges) == [(0, 4), (1, 5), (2, 6), (3, 7)]


# --- label issues ----------------------------------------------------------------------------------

PROBS = np.array([
    [0.90, 0.05, 0.05],  # labelled 0, fine
    [0.70, 0.20, 0.10],  # labelled 0, fine (under t0 but the model agrees)
    [0.05, 0.90, 0.05],  # labelled 0, confidently class 1: off-diagonal
    [0.10, 0.80, 0.10],  # labelled 1, fine
    [0.20, 0.60, 0.20],  # labelled 1, fine
    [0.30, 0.25, 0.45],  # labelled 1: under t1 and the model prefers 2
    [0.10, 0.10, 0.80],  # labelled 2
    [0.30, 0.30, 0.40],  # no label
])
GIVEN = np.array([0, 0, 0, 1, 1, 1, 2, -1])


def test_thresholds_are_mean_self_confidence_per_class() -> None:
    # t0 = (0.9 + 0.7 + 0.05) / 3, t1 = (0.8 + 0.6 + 0.25) / 3, t2 = 0.8
    assert np.allclose(class_thresholds(PROBS, GIVEN), [0.55, 0.55, 0.8])


def test_label_issues_by_hand() -> None:
    issues = find_label_issues(PROBS, GIVEN)
    # row 2: p(1) = 0.9 ≥ t1 = 0.55 → confidently 1; margin 0.05 − 0.9 → score (1 + 0.85) / 2 = 0.925.
    # row 5: p(1) = 0.25 < t1 and argmax 2 ≠ 1; no class over its threshold; margin 0.25 − 0.45 → 0.6.
    assert [(i.row, i.given, i.suggested) for i in issues] == [(2, 0, 1), (5, 1, 2)]
    assert [i.score for i in issues] == pytest.approx([0.925, 0.6])
    assert issues[0].self_confidence == pytest.approx(0.05)


def test_no_issue_when_labels_agree() -> None:
    probs = np.eye(3) * 0.8 + 0.2 / 3
    assert find_label_issues(probs, [0, 1, 2]) == []


# --- outliers --------------------------------------------------------------------------------------


def test_knn_distance_averages_the_first_k_and_skips_missing() -> None:
    sims = np.array([[0.9, 0.8, 0.1], [0.5, -np.inf, -np.inf]])
    assert knn_distance(sims, 2) == pytest.approx([0.15, 0.5])


def test_outliers_beyond_tukeys_far_fence() -> None:
    distances = np.array([0.10, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17, 0.40, 0.30])
    # Q1 = 0.1225, Q3 = 0.1675, IQR = 0.045 → fence 0.1675 + 3·0.045 = 0.3025: only 0.40
    found = find_outliers(distances)
    assert [(o.row, o.distance) for o in found] == [(8, 0.40)]
    assert found[0].iqrs_above_q3 == pytest.approx((0.40 - 0.1675) / 0.045)


# --- summary and the table -------------------------------------------------------------------------


def test_class_balance_on_the_truth() -> None:
    balance = class_balance(["a", "b", "c"], ["a", "a", "b", None], ["a", "b", "b", "b"])
    assert [(c.name, c.labelled, c.truth) for c in balance.classes] == [("a", 2, 1), ("b", 1, 3), ("c", 0, 0)]
    assert (balance.basis, balance.ratio, balance.largest, balance.smallest) == ("truth", None, "b", "c")
    assert class_balance(["a", "b"], ["a", "a", "a", "b"]).ratio == 3.0


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_findings_round_trip(tmp_path: Path, suffix: str) -> None:
    rows = [Finding("duplicate", "a.jpg", 1.0, "exact", other_path="b.jpg", group=1),
            Finding("summary", None, 0.5, "class 'x'", label="x")]
    out = write_findings(rows, tmp_path / f"f{suffix}")
    frame = load_findings(out)
    assert list(frame.columns[:5]) == ["kind", "path", "other_path", "score", "detail"]
    assert frame["kind"].tolist() == ["duplicate", "summary"]
    assert frame["other_path"].iloc[0] == "b.jpg" and pd.isna(frame["path"].iloc[1])
    assert [p.name for p in tmp_path.iterdir()] == [f"f{suffix}"]  # no temp file left


def test_findings_need_a_table_suffix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="must end in .parquet or .csv"):
        write_findings([], tmp_path / "f.txt")


# --- end to end with the tiny-shapes model ----------------------------------------------------------

from click.testing import CliRunner  # noqa: E402

from autolabel.cli import main  # noqa: E402

from .conftest import TINY_SHAPES  # noqa: E402

MODEL = TINY_SHAPES / "model"


def planted(root: Path, seed: int = 3) -> tuple[set[frozenset[str]], set[str]]:
    """24 tiny-shapes originals, 12 planted copies (4 exact, 4 JPEG re-encodes, 4 at 80% size), 3 flipped truths.

    Writes root/manifest.csv (path, truth, split); returns the planted pairs and the flipped paths.
    """
    from shapes import CLASSES, COLORS, SHAPES, draw_shape, near_copy

    rng = random.Random(seed)
    root.mkdir(parents=True)
    rows = []
    for i in range(24):
        color, shape = list(COLORS)[i % 4], SHAPES[(i // 4) % 3]
        image = draw_shape(color, shape, rng, (rng.randint(48, 160), rng.randint(48, 160)))
        name = f"img{i:02d}." + ("jpg" if i % 2 == 0 else "png")
        image.save(root / name, quality=92)
        rows.append({"path": name, "truth": f"{color} {shape}", "split": "train"})
    pairs = set()
    for k, i in enumerate(rng.sample(range(24), 12)):
        name = near_copy(root / rows[i]["path"], f"copy{k:02d}", k % 3)
        rows.append({"path": name, "truth": rows[i]["truth"], "split": "test" if k < 2 else "train"})
        pairs.add(frozenset((rows[i]["path"], name)))
    flipped = set()
    for i in rng.sample(range(len(rows)), 3):
        rows[i]["truth"] = rng.choice([c for c in CLASSES if c != rows[i]["truth"]])
        flipped.add(rows[i]["path"])
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return pairs, flipped


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set, set]:
    """The planted set labelled once by `autolabel run` (its embeddings in a private cache)."""
    base = tmp_path_factory.mktemp("audit")
    pairs, flipped = planted(base / "images")
    labels, cache = base / "labels.parquet", base / "cache"
    result = CliRunner().invoke(main, ["run", str(base / "images" / "manifest.csv"), "-l",
                                       str(TINY_SHAPES / "labels.yaml"), "-o", str(labels), "-m", str(MODEL),
                                       "--cache-dir", str(cache), "-q"])
    assert result.exit_code == 0, result.output
    return labels, cache, pairs, flipped


def audit(labels: Path, cache: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["audit", str(labels), "--out", str(out), "--cache-dir", str(cache), *extra])


def test_planted_duplicates_found_exactly(labelled, tmp_path: Path) -> None:
    labels, cache, pairs, _ = labelled
    result = audit(labels, cache, tmp_path / "f.parquet", "--kinds", "duplicate")
    assert result.exit_code == 0, result.output
    found = pd.read_parquet(tmp_path / "f.parquet")
    assert set(found["kind"]) == {"duplicate"}
    assert {frozenset(p) for p in zip(found["path"], found["other_path"], strict=True)} == pairs
    assert f"{len(pairs)} duplicate (in {found['group'].nunique()} groups)" in result.output
    exact = found[found["score"] == 1.0]
    assert len(exact) >= 4 and exact["detail"].str.startswith("exact copy").sum() == 4


def test_flipped_labels_lead_the_label_issues(labelled, tmp_path: Path) -> None:
    labels, cache, _, flipped = labelled
    result = audit(labels, cache, tmp_path / "f.csv", "--truth", "truth", "--kinds", "label_issue,summary")
    assert result.exit_code == 0, result.output
    found = pd.read_csv(tmp_path / "f.csv")
    issues = found[found["kind"] == "label_issue"]
    assert set(issues["path"].head(3)) == flipped
    assert issues["score"].is_monotonic_decreasing
    assert "red circle" in result.output and "imbalance (truth)" in result.output  # the class table on stdout


def test_split_column_reports_leakage(labelled, tmp_path: Path) -> None:
    labels, cache, pairs, _ = labelled
    result = audit(labels, cache, tmp_path / "f.parquet", "--kinds", "duplicate", "--split-column", "split")
    assert result.exit_code == 0, result.output
    leaks = pd.read_parquet(tmp_path / "f.parquet").query("kind == 'leakage'")
    frame = pd.read_parquet(labels)
    split = dict(zip(frame["path"], frame["split"], strict=True))
    crossing = {p for p in pairs if len({split[x] for x in p}) == 2}
    assert len(crossing) == 2
    assert {frozenset(p) for p in zip(leaks["path"], leaks["other_path"], strict=True)} == crossing


def test_audit_embeds_only_what_the_cache_lacks(labelled, tmp_path: Path) -> None:
    labels, cache, _, _ = labelled
    fresh = audit(labels, tmp_path / "empty-cache", tmp_path / "a.parquet", "--kinds", "outlier", "-q")
    again = audit(labels, tmp_path / "empty-cache", tmp_path / "b.parquet", "--kinds", "outlier", "-q")
    warm = audit(labels, cache, tmp_path / "c.parquet", "--kinds", "outlier", "-q")
    assert "36 images audited (36 newly embedded" in fresh.output
    assert "(0 newly embedded" in again.output and "(0 newly embedded" in warm.output
    assert pd.read_parquet(tmp_path / "b.parquet").equals(pd.read_parquet(tmp_path / "c.parquet"))


def test_images_root_and_an_unreadable_image(labelled, tmp_path: Path) -> None:
    import shutil

    labels, cache, pairs, _ = labelled
    root = tmp_path / "moved"
    shutil.copytree(labels.parent / "images", root)
    gone = sorted(next(iter(sorted(pairs, key=sorted))))[0]
    (root / gone).unlink()
    result = audit(labels, cache, tmp_path / "f.parquet", "--kinds", "duplicate", "--images-root", str(root))
    assert result.exit_code == 0, result.output
    assert f"skipping {gone}: file not found" in result.output
    assert "35 images audited (0 newly embedded, 1 unreadable): 11 duplicate" in result.output
    found = pd.read_parquet(tmp_path / "f.parquet")
    assert gone not in set(found["path"]) | set(found["other_path"])


def test_no_image_found_is_one_line_with_the_fix(labelled, tmp_path: Path) -> None:
    labels, cache, _, _ = labelled
    for kinds in ("duplicate", "outlier,label_issue"):
        result = audit(labels, cache, tmp_path / "f.parquet", "--kinds", kinds, "--truth", "truth",
                       "--images-root", str(tmp_path / "nowhere"))
        assert result.exit_code == 2, result.output
        last = result.output.strip().splitlines()[-1]
        assert last.startswith(f"error: {labels}: none of its ") and "could be read" in last
        assert last.endswith(f"check that --images-root {tmp_path / 'nowhere'} is the folder the table's paths "
                             "start from") and "Traceback" not in result.output
        assert not (tmp_path / "f.parquet").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "findings.txt"], "must end in .parquet or .csv"),
    (["--out", "{tmp}"], "is a directory"),
    (["--kinds", "typo"], "unknown kind 'typo'"),
    (["--kinds", "label_issue"], "needs the true labels"),
    (["--split-column", "nope"], "--split-column nope: not a column"),
    (["--truth", "nope"], "--truth nope: not a column"),
    (["--out", "{labels}"], "an input of this command"),
])
def test_bad_options_exit_2_before_the_model_loads(labelled, tmp_path: Path, args: list[str], message: str) -> None:
    labels, cache, _, _ = labelled
    args = [a.replace("{tmp}", str(tmp_path)).replace("{labels}", str(labels)) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "f.parquet")]
    result = CliRunner().invoke(main, ["audit", str(labels), *out, *args, "--model", str(tmp_path / "no-model"),
                                       "--cache-dir", str(cache)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "f.parquet").exists()
    assert pd.read_parquet(labels).shape[0] == 36


def test_report_gets_an_audit_section(labelled, tmp_path: Path) -> None:
    from .test_report import check

    labels, cache, _, _ = labelled
    assert audit(labels, cache, tmp_path / "f.parquet", "--truth", "truth").exit_code == 0
    result = CliRunner().invoke(main, ["report", str(labels), "--out", str(tmp_path / "r.html"),
                                       "--audit", str(tmp_path / "f.parquet")])
    assert result.exit_code == 0, result.output
    document = (tmp_path / "r.html").read_text()
    checker = check(document)
    assert "audit" in checker.ids and "href='#audit'" in document
    section = document[document.index("<section id='audit'>"):]
    assert section.count("data:image/jpeg;base64,") >= 2 * 12 + 3  # every pair's thumbnails, the issues
