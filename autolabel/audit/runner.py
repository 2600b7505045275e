"""`autolabel audit` as a library call: labels table → embeddings → duplicates, label issues, outliers → FINDINGS."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autolabel.audit.duplicates import DuplicateRule, candidate_pairs, confirmed_edges, duplicate_findings, exact_edges
from autolabel.audit.findings import KINDS, Finding, findings_format, is_findings, write_findings
from autolabel.audit.label_issues import find_label_issues
from autolabel.audit.neighbours import Neighbours, nearest
from autolabel.audit.outliers import find_outliers, knn_distance
from autolabel.audit.pixels import BASE_PX, PixelRule, base_thumbnail
from autolabel.audit.summary import Balance, balance_findings, class_balance
from autolabel.core import storage
from autolabel.core.errors import SourceError, UsageError
from autolabel.core.fileio import check_output_file
from autolabel.core.progress import Reporter
from autolabel.table.results import Results, load_results

if TYPE_CHECKING:
    from autolabel.embedding.session import Embedded, Session

NEIGHBOURS = 16  # per image: duplicate candidates are among these, outlier distances use the first k


@dataclass(frozen=True)
class AuditConfig:
    """Everything `autolabel audit` needs."""

    labels: str
    out: str
    truth: str | None = None  # default: the table's reviewed_label column, when it has one
    images_root: str | None = None
    kinds: tuple[str, ...] | None = None  # None: every kind the inputs allow
    split_column: str | None = None
    spec: str | None = None  # the label spec, for CSV tables
    model: str | None = None  # default: the run's model
    device: str = "auto"
    cache_dir: str | None = None
    batch_size: int = 32
    workers: int = 0
    candidate_similarity: float = 0.90
    crops: bool = True
    outlier_k: int = 5
    outlier_fence: float = 3.0
    quiet: bool = False


@dataclass(frozen=True)
class AuditResult:
    """What the audit wrote and found."""

    out: Path
    findings: tuple[Finding, ...]
    balance: Balance
    audited: int  # images with an embedding
    failed: int  # images that could not be read now
    encoded: int  # embeddings the cache lacked


def _kinds(config: AuditConfig, has_truth: bool) -> tuple[str, ...]:
    if config.kinds is None:
        wanted = ("duplicate", "label_issue", "outlier", "summary")
        return tuple(k for k in wanted if k != "label_issue" or has_truth)
    unknown = [k for k in config.kinds if k not in KINDS or k == "leakage"]
    if unknown:
        raise UsageError(f"--kinds: unknown kind '{unknown[0]}'; choose from duplicate, label_issue, outlier, "
                         "summary (leakage comes with duplicate and --split-column)")
    if "label_issue" in config.kinds and not has_truth:
        raise UsageError("--kinds label_issue needs the true labels: pass --truth COLUMN (e.g. reviewed_label)")
    return tuple(k for k in KINDS if k in config.kinds)


def _check(config: AuditConfig) -> None:
    findings_format(config.out)
    if not 0.0 < config.candidate_similarity <= 1.0:
        raise UsageError(f"--candidate-similarity must be in (0, 1], got {config.candidate_similarity}")
    if config.outlier_k < 1 or config.outlier_k > NEIGHBOURS:
        raise UsageError(f"--outlier-k must be between 1 and {NEIGHBOURS}, got {config.outlier_k}")
    if config.batch_size < 1 or config.workers < 0:
        raise UsageError("--batch-size must be ≥ 1 and --workers ≥ 0")
    check_output_file(config.out, "--out", (config.labels, config.spec, config.truth), is_findings)


def _root(results: Results, given: str | None) -> str:
    """Where relative paths resolve: --images-root, else the run's recorded root, else its SOURCE's folder."""
    if given:
        return given
    recorded = results.metadata.get("images_root")
    return str(recorded) if recorded else str(results.images_root())


def _location(path: str, root: str) -> str:
    if storage.is_url(path) or Path(path).is_absolute():
        return path
    return storage.join(root.rstrip("/") + "/", path) if storage.is_url(root) else str(Path(root) / path)


def _thumbnailer(locations: Sequence[str], draft: bool) -> Callable[[int], np.ndarray | None]:
    from autolabel.embedding.decode import DecodeError, open_image, read_bytes

    def thumbnail(row: int) -> np.ndarray | None:
        try:
            return base_thumbnail(open_image(read_bytes(locations[row]), 2 * BASE_PX if draft else None))
        except DecodeError:
            return None

    return thumbnail


def _given(truth: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(t, -1) if t is not None else -1 for t in truth], np.int64)


@dataclass(frozen=True)
class _Plan:
    """What the audit works on, checked before the model loads: the table's readable rows and their options."""

    results: Results
    kinds: tuple[str, ...]
    paths: list[str]  # the rows that were labelled (error rows are skipped)
    locations: list[str]
    truth: list[str | None] | None  # per row above
    truth_spec: str | None
    splits: list[str | None] | None
    labels: list[str | None]
    draft: bool


def _text(value: Any) -> str | None:
    return None if value is None or value != value else str(value)  # NaN != NaN


def plan_audit(config: AuditConfig) -> _Plan:
    """Every check that needs no model: options, FINDINGS' location, LABELS, truth, split column."""
    from autolabel.table.truth import resolve_truth

    _check(config)
    results = load_results(config.labels, config.spec)
    frame = results.frame.reset_index(drop=True)
    truth_spec = config.truth or ("reviewed_label" if "reviewed_label" in frame.columns else None)
    truth = resolve_truth(results, truth_spec).labels if truth_spec else None
    kinds = _kinds(config, truth is not None)
    if config.split_column is not None and config.split_column not in frame.columns:
        raise UsageError(f"--split-column {config.split_column}: not a column of {results.path} "
                         f"({', '.join(c for c in frame.columns if c != 'path')})")
    if "label_issue" in kinds and results.spec is None:
        raise UsageError(f"{results.path}: label issues need the label spec; pass it with --labels")
    rows = np.flatnonzero((frame["status"] != "error").to_numpy())
    paths = [str(p) for p in frame["path"].iloc[rows]]
    root = _root(results, config.images_root)
    return _Plan(
        results=results, kinds=kinds, paths=paths, locations=[_location(p, root) for p in paths],
        truth=[truth[r] for r in rows] if truth is not None else None, truth_spec=truth_spec,
        splits=None if config.split_column is None else [_text(v) for v in frame[config.split_column].iloc[rows]],
        labels=[_text(v) for v in frame["label"].iloc[rows]], draft=bool(results.metadata.get("draft", True)))


def run_audit(config: AuditConfig, *, reporter: Reporter | None = None, session: Session | None = None
              ) -> AuditResult:
    """Audit a labels table and write FINDINGS; `session` may be passed in (a loaded model, or a fake, with a
    cache), else it is the session of the run that labelled the table."""
    from autolabel.core.config import CacheConfig
    from autolabel.embedding.session import Session

    reporter = reporter or Reporter(quiet=config.quiet)
    plan = plan_audit(config)
    session = session or Session.for_table(plan.results, config.model, config.device, CacheConfig(config.cache_dir),
                                           reporter)
    try:
        embedded = session.embed_images(plan.locations, reporter, config.batch_size, config.workers)
        for path, error in zip(plan.paths, embedded.errors, strict=True):
            if error is not None:
                reporter.skip(path, error)
        reporter.skips_done()
        unread = int((~embedded.ok).sum())
        hint = ("pass --images-root DIR, the folder the table's relative paths start from" if config.images_root is None
                else f"check that --images-root {config.images_root} is the folder the table's paths start from")
        if len(plan.paths) and not embedded.ok.any():
            raise SourceError(f"{plan.results.path}: none of its {len(plan.paths)} images could be read (e.g. "
                              f"{plan.paths[0]}: {embedded.errors[0]}); {hint}")
        if unread:
            reporter.warn(f"{unread} of {len(plan.paths)} images could not be read and are left out; {hint}")
        neighbours, reps = _neighbours(embedded, plan.kinds)
        findings: list[Finding] = []
        if "duplicate" in plan.kinds:
            findings += _duplicates(plan, embedded, neighbours, reps, config)
        if "label_issue" in plan.kinds:
            findings += _label_issues(plan, embedded, session.model, session.encode)
        if "outlier" in plan.kinds:
            findings += _outliers(plan, neighbours, reps, config)
    finally:
        session.close()
    balance = class_balance(plan.results.classes, plan.labels, plan.truth)
    if "summary" in plan.kinds:
        findings += balance_findings(balance)
    order = {k: i for i, k in enumerate(KINDS)}
    findings = sorted(findings, key=lambda f: order[f.kind])  # stable: each kind keeps its own order
    metadata = {
        "labels": str(plan.results.path), "model": getattr(session.model, "name", None), "kinds": list(plan.kinds),
        "truth": plan.truth_spec, "split_column": config.split_column,
        "candidate_similarity": config.candidate_similarity, "crops": config.crops,
        "outlier_k": config.outlier_k, "outlier_fence": config.outlier_fence,
        "images": len(plan.paths), "audited": int(embedded.ok.sum()), "encoded": embedded.encoded,
    }
    out = write_findings(findings, config.out, metadata)
    return AuditResult(out, tuple(findings), balance, int(embedded.ok.sum()), int((~embedded.ok).sum()),
                       embedded.encoded)


def _neighbours(embedded: Embedded, kinds: Sequence[str]) -> tuple[Neighbours, np.ndarray]:
    """Neighbours among one row per distinct content (exact copies are found by hash, not here)."""
    seen: set[str | None] = set()
    reps = []
    for row in np.flatnonzero(embedded.ok):
        digest = embedded.digests[row]
        if digest is None or digest not in seen:
            seen.add(digest)
            reps.append(row)
    reps_array = np.asarray(reps, np.int64)
    if not ({"duplicate", "outlier"} & set(kinds)):
        return Neighbours(np.zeros((0, 1), np.int64), np.zeros((0, 1), np.float32)), reps_array
    return nearest(embedded.vectors[reps_array], NEIGHBOURS), reps_array


def _duplicates(plan: _Plan, embedded: Embedded, neighbours: Neighbours, reps: np.ndarray,
                config: AuditConfig) -> list[Finding]:
    rule = DuplicateRule(config.candidate_similarity, PixelRule(crops=config.crops))
    vectors = embedded.vectors
    edges = exact_edges([d if ok else None for d, ok in zip(embedded.digests, embedded.ok, strict=True)])
    edges += confirmed_edges(candidate_pairs(neighbours, reps, rule), lambda a, b: float(vectors[a] @ vectors[b]),
                             _thumbnailer(plan.locations, plan.draft), rule)
    return duplicate_findings(plan.paths, edges, plan.splits)


def _label_issues(plan: _Plan, embedded: Embedded, model: Any, encode: Callable[[Sequence[str]], np.ndarray]
                  ) -> list[Finding]:
    from autolabel.classifier.classify import Classifier

    classifier = Classifier.build(plan.results.spec, encode, model.logit_scale, model.logit_bias)
    ok = np.flatnonzero(embedded.ok)
    probs = classifier.probabilities(embedded.vectors[ok])
    names = classifier.columns  # the classes, then the spec's `other` label when it has one
    given = _given([plan.truth[r] for r in ok] if plan.truth else [], names)
    out = []
    for issue in find_label_issues(probs, given):
        row, p = ok[issue.row], probs[issue.row]
        out.append(Finding(
            "label_issue", plan.paths[row], issue.score,
            f"labelled '{names[issue.given]}' but the model is confident it is '{names[issue.suggested]}' "
            f"(p={p[issue.suggested]:.3f}; p of the given label {issue.self_confidence:.3f})",
            label=names[issue.given], suggested=names[issue.suggested]))
    return out


def _outliers(plan: _Plan, neighbours: Neighbours, reps: np.ndarray, config: AuditConfig) -> list[Finding]:
    distances = knn_distance(neighbours.similarity, config.outlier_k)
    return [Finding("outlier", plan.paths[reps[o.row]], o.distance,
                    f"far from every other image: mean cosine distance {o.distance:.4f} to its {config.outlier_k} "
                    f"nearest ({o.iqrs_above_q3:.1f} IQR above the upper quartile)")
            for o in find_outliers(distances, config.outlier_fence)]
