"""The review planner: typical images of every cluster first, then balance, uncertainty and disagreement."""

from __future__ import annotations

import numpy as np
import pytest

from autolabel.learn.planner import kmeans, margins, plan, typicality


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def blobs(sizes: tuple[int, ...], dim: int = 16, spread: float = 0.15, outliers: int = 0, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around len(sizes) orthogonal centres (blob i along axis i), then lone outliers; and the blob
    of every row (-1 for an outlier)."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for i, size in enumerate(sizes):
        centre = np.eye(dim)[i]
        rows.append(centre + spread * rng.standard_normal((size, dim)))
        truth += [i] * size
    for _ in range(outliers):
        rows.append(rng.standard_normal((1, dim)))
        truth.append(-1)
    return unit(np.concatenate(rows)), np.asarray(truth)


def probabilities(truth: np.ndarray, k: int, sure: float = 0.9) -> np.ndarray:
    p = np.full((len(truth), k), (1 - sure) / (k - 1))
    p[np.arange(len(truth)), np.maximum(truth, 0) % k] = sure
    return p


def test_cold_start_takes_one_typical_image_per_cluster_largest_cluster_first() -> None:
    x, truth = blobs((60, 35, 20), outliers=4)
    zs = np.full((len(x), 3), 1 / 3)
    result = plan(x, zs, None, np.zeros(len(x), bool), None, budget=3)
    first = result.order[:3]
    assert truth[first].tolist() == [0, 1, 2]
    assert result.reasons[:3] == ("coverage",) * 3
    for row, blob in zip(first, (0, 1, 2), strict=True):  # typical: closer to its blob's centre than most members
        members = np.flatnonzero(truth == blob)
        centre = unit(x[members].mean(axis=0, keepdims=True))[0]
        assert x[row] @ centre >= np.quantile(x[members] @ centre, 0.7)
    assert sorted(result.order.tolist()) == list(range(len(x)))  # every row gets a place
    assert result.priority[first].tolist() == sorted(result.priority[first].tolist())
    assert result.priority.min() >= 0.0 and result.priority.max() < 1.0


def test_outliers_come_after_typical_images_and_the_plan_is_deterministic() -> None:
    x, truth = blobs((30, 30, 30, 30), outliers=6, seed=3)
    zs = np.full((len(x), 4), 0.25)
    a = plan(x, zs, None, np.zeros(len(x), bool), None, budget=4)
    b = plan(x.copy(), zs.copy(), None, np.zeros(len(x), bool), None, budget=4)
    assert a.order.tolist() == b.order.tolist() and a.reasons == b.reasons
    assert set(truth[a.order[:4]].tolist()) == {0, 1, 2, 3}
    places = np.argsort(a.order)
    assert places[truth == -1].min() >= 8  # lone outliers: never among the first 2 × budget


def test_reviewed_rows_are_never_planned_and_rank_last_in_priority() -> None:
    x, truth = blobs((40, 40, 40))
    reviewed = np.zeros(len(x), bool)
    reviewed[[0, 1, 2, 41]] = True
    labels = np.where(reviewed, truth, -1)
    zs = probabilities(truth, 3, 0.5)
    result = plan(x, zs, probabilities(truth, 3), reviewed, labels, budget=5)
    assert not reviewed[result.order].any()
    assert len(result.order) == len(x) - 4
    assert (result.priority[reviewed] == 1.0).all() and (result.priority[~reviewed] < 1.0).all()


def test_with_examples_the_blob_no_example_covers_comes_first() -> None:
    x, truth = blobs((50, 50, 30))
    reviewed = np.isin(np.arange(len(x)), [0, 1, 50, 51])  # blobs 0 and 1 have examples, blob 2 none
    labels = np.where(reviewed, truth, -1)
    adapted = probabilities(np.where(truth == 2, 0, truth), 3)  # the adapter has never seen class 2
    result = plan(x, probabilities(truth, 3, 0.4), adapted, reviewed, labels, budget=4)
    assert 2 in truth[result.order[:4]].tolist()
    assert result.reasons[truth[result.order[:4]].tolist().index(2)] == "coverage"


def test_balance_asks_for_the_class_with_fewest_examples() -> None:
    x, truth = blobs((40, 40, 40))
    reviewed = np.isin(np.arange(len(x)), [0, 1, 2, 3, 40, 41, 42, 80])  # class 2 has one example only
    labels = np.where(reviewed, truth, -1)
    result = plan(x, probabilities(truth, 3, 0.4), probabilities(truth, 3), reviewed, labels, budget=6)
    balanced = [int(truth[r]) for r, why in zip(result.order, result.reasons, strict=False) if why == "balance"]
    assert balanced and balanced[0] == 2


def test_uncertain_rows_of_the_adapted_classifier_come_before_sure_ones() -> None:
    x, truth = blobs((40, 40))
    reviewed = np.isin(np.arange(len(x)), [0, 1, 40, 41])
    labels = np.where(reviewed, truth, -1)
    adapted = probabilities(truth, 2, 0.95)
    doubtful = [10, 55]
    adapted[doubtful] = [0.52, 0.48]
    result = plan(x, probabilities(truth, 2, 0.3), adapted, reviewed, labels, budget=6)
    uncertain = [int(r) for r, why in zip(result.order, result.reasons, strict=False) if why == "uncertain"]
    assert uncertain[:2] == doubtful
    assert set(doubtful) <= set(result.order[:6].tolist())


def test_disagreement_is_asked_only_when_zero_shot_is_right_on_the_reviewed_rows() -> None:
    x, truth = blobs((40, 40))
    reviewed = np.isin(np.arange(len(x)), [0, 1, 40, 41])
    labels = np.where(reviewed, truth, -1)
    adapted = probabilities(truth, 2, 0.9)
    informed = probabilities(truth, 2, 0.8)
    informed[20] = [0.1, 0.9]  # zero-shot and adapter disagree on row 20
    with_text = plan(x, informed, adapted, reviewed, labels, budget=6)
    assert "disagree" in with_text.reasons[:6]
    assert with_text.order[with_text.reasons.index("disagree")] == 20
    clueless = probabilities(1 - truth, 2, 0.8)  # zero-shot wrong on every reviewed row: its opinion is noise
    without = plan(x, clueless, adapted, reviewed, labels, budget=6)
    assert "disagree" not in without.reasons


def test_multi_label_uncertainty_is_the_distance_of_a_class_score_to_its_threshold() -> None:
    scores = np.array([[0.95, 0.02], [0.55, 0.01], [0.97, 0.31]])
    distance = margins(scores, True, np.array([0.5, 0.3]))
    assert np.argsort(distance).tolist() == [2, 1, 0]
    x, truth = blobs((20, 20))
    reviewed = np.isin(np.arange(len(x)), [0, 20])
    labels = np.zeros((len(x), 2), bool)
    labels[reviewed, truth[reviewed]] = True
    adapted = np.where(np.eye(2, dtype=bool)[truth], 0.95, 0.02)
    adapted[7] = [0.96, 0.29]  # class 1 is nearly on its threshold
    result = plan(x, adapted, adapted, reviewed, labels, budget=3, multi_label=True, thresholds=np.array([0.5, 0.3]))
    assert 7 in result.order[:3].tolist()


def test_kmeans_and_typicality_find_the_blobs() -> None:
    x, truth = blobs((30, 30, 30))
    clusters = kmeans(x, 3)
    assert len({(c, t) for c, t in zip(clusters.tolist(), truth.tolist(), strict=True)}) == 3
    typical = typicality(x, clusters)
    assert (typical > 0).all()


def test_bad_shapes_and_budgets_are_refused() -> None:
    x, _ = blobs((5, 5))
    with pytest.raises(ValueError, match="one row per image"):
        plan(x, np.ones((3, 2)) / 2, None, np.zeros(len(x), bool), None, 2)
    with pytest.raises(ValueError, match="budget"):
        plan(x, np.ones((len(x), 2)) / 2, None, np.zeros(len(x), bool), None, -1)
    everything = plan(x, np.ones((len(x), 2)) / 2, None, np.ones(len(x), bool), None, 2)
    assert len(everything.order) == 0 and (everything.priority == 1.0).all()


def test_the_first_picks_of_a_large_budget_are_spread_over_the_data_not_all_in_its_largest_class() -> None:
    x, truth = blobs((200, 40, 40), spread=0.15, seed=2)
    result = plan(x, np.full((len(x), 3), 1 / 3), None, np.zeros(len(x), bool), None, budget=12)
    assert set(truth[result.order[:3]].tolist()) == {0, 1, 2}  # the big blob has most clusters, not the prefix
