"""Prompt ensembling against an independent computation; probabilities, top-k, margin and status."""

from __future__ import annotations

import numpy as np

from autolabel.classifier.classify import Classifier, ensemble
from autolabel.core.spec import parse_spec


def test_ensemble_matches_straightforward_computation() -> None:
    rng = np.random.default_rng(0)
    groups = [rng.normal(size=(n, 8)) * rng.uniform(0.5, 3, size=(n, 1)) for n in (1, 3, 5)]
    expected = []
    for g in groups:
        rows = [v / np.sqrt((v**2).sum()) for v in g]
        mean = sum(rows) / len(rows)
        expected.append(mean / np.sqrt((mean**2).sum()))
    np.testing.assert_allclose(ensemble(groups), np.stack(expected), atol=1e-12)


def _fake_encoder(dim: int = 6):
    """Deterministic 'text encoder': a fixed random vector per prompt string."""
    def encode(prompts):
        return np.stack([np.random.default_rng(abs(hash(p)) % 2**32).normal(size=dim) for p in prompts])
    return encode


def test_classifier_encodes_all_prompts_once_in_spec_order() -> None:
    spec = parse_spec({"templates": ["a {label}", "the {label}"],
                       "classes": ["x", {"name": "y", "synonyms": ["z"], "prompts": ["lit"]}]})
    calls = []
    encode = _fake_encoder()

    def recording(prompts):
        calls.append(list(prompts))
        return encode(prompts)

    clf = Classifier.build(spec, recording, scale=10.0)
    assert calls == [["a x", "the x", "a y", "the y", "a z", "the z", "lit"]]
    expected_y = ensemble([encode(["a y", "the y", "a z", "the z", "lit"])])[0]
    np.testing.assert_allclose(clf.matrix[1], expected_y)


def test_probabilities_decisions_and_thresholds() -> None:
    spec = parse_spec({"templates": ["{label}"], "min_margin": 0.1, "threshold": 0.5,
                       "classes": ["a", "b", {"name": "c", "threshold": 0.9}]})
    clf = Classifier(class_names=("a", "b", "c"), matrix=np.eye(3), scale=2.0, bias=-1.0,
                     thresholds=np.array(spec.thresholds()), min_margin=spec.min_margin, top_k=2)
    images = np.array([[5.0, 0, 0], [0, 0, 1.0], [1.0, 1.0, 0.0]])
    probs = clf.probabilities(images)
    unit = images / np.linalg.norm(images, axis=1, keepdims=True)
    logits = 2.0 * unit - 1.0
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, expected)
    preds = clf.decide(probs)
    assert preds[0].label == "a" and preds[0].status == "accepted"  # p=0.787 ≥ 0.5, margin 0.68 ≥ 0.1
    assert preds[0].top_labels == ["a", "b"] and len(preds[0].top_scores) == 2
    assert abs(preds[0].margin - (probs[0, 0] - probs[0, 1])) < 1e-12
    assert preds[2].margin == 0.0 and preds[2].status == "review"  # a tie never passes min_margin
    assert preds[1].label == "c" and preds[1].status == "review"  # below c's own threshold 0.9


def test_accepted_needs_threshold_and_margin() -> None:
    clf = Classifier(class_names=("a", "b"), matrix=np.eye(2), scale=100.0, bias=0.0,
                     thresholds=np.array([0.5, 0.5]), min_margin=0.2, top_k=5)
    preds = clf.classify(np.array([[1.0, 0.0], [1.0, 0.999]]))
    assert preds[0].status == "accepted" and preds[0].confidence > 0.99
    assert preds[1].status == "review"
    assert len(preds[0].top_labels) == 2  # top_k is capped at the number of classes
