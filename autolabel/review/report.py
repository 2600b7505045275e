"""A self-contained HTML review report: summary, galleries, review queue, errors, histograms, confusion."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import math
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autolabel.embedding.decode import DecodeError, open_image, read_bytes
from autolabel.review import review_ui
from autolabel.table.results import Results
from autolabel.task.metrics import Truth


@dataclass(frozen=True)
class ReportLimits:
    """Caps that keep the file small and the page fast at any table size."""

    gallery_total: int = 600  # thumbnails over all class galleries
    gallery_per_class: int = 24
    review_thumbs: int = 300  # rows of the review queue shown with their image
    review_rows: int = 2000  # rows of the review queue
    error_rows: int = 1000
    misclassified_thumbs: int = 60
    thumb_px: int = 96


def thumbnail(location: Path, px: int) -> str | None:
    """A small JPEG data URI, or None if the image cannot be read."""
    try:
        image = open_image(read_bytes(str(location)), draft_size=px * 2)
    except DecodeError:
        return None
    image.thumbnail((px, px))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def histogram_svg(values: np.ndarray, threshold: float | None = None, bins: int = 20) -> str:
    """A confidence histogram with axes: x from 0 to 1, y in images per bin (log scale when one bin dominates),
    each bar titled with its range and count, and the class threshold as a dashed line."""
    counts, _ = np.histogram(values, bins=bins, range=(0.0, 1.0))
    width, height, left, bottom, top_pad = 240, 80, 30, 14, 6
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    top = max(1, int(counts.max()))
    nonzero = counts[counts > 0]
    log = len(nonzero) > 1 and top > 10 * float(np.median(nonzero))

    def y(count: float) -> float:
        share = math.log10(1 + count) / math.log10(1 + top) if log else count / top
        return plot_h * share

    bar = plot_w / bins
    parts = [f'<svg class="hist" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="confidence histogram of {int(counts.sum())} images{", log scale" if log else ""}">']
    for i, count in enumerate(counts):
        if count:
            h = max(1.0, y(count))
            parts.append(f'<rect x="{left + i * bar:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar - 1:.1f}" '
                         f'height="{h:.1f}"><title>{i / bins:.2f}–{(i + 1) / bins:.2f}: {count} images</title></rect>')
    base = top_pad + plot_h
    parts.append(f'<path class="axis" d="M{left},{top_pad} V{base} H{left + plot_w}"/>')
    for tick in (0.0, 0.5, 1.0):
        x = left + tick * plot_w
        parts.append(f'<path class="axis" d="M{x:.1f},{base} v3"/><text x="{x:.1f}" y="{height - 2}" '
                     f'text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{left - 3}" y="{top_pad + 7}" text-anchor="end">{top}</text>'
                 f'<text x="{left - 3}" y="{base}" text-anchor="end">0</text>')
    if log:
        parts.append(f'<text x="{left + 3}" y="{top_pad + 7}">log scale</text>')
    if threshold is not None and 0.0 <= threshold <= 1.0:
        x = left + threshold * plot_w
        parts.append(f'<path class="threshold" d="M{x:.1f},{top_pad} V{base}"><title>threshold {threshold:g}'
                     '</title></path>')
    return "".join(parts) + "</svg>"


def short_path(path: str, limit: int = 40) -> str:
    """A path longer than `limit` characters cut in the middle (`head…tail`), at separators where it can be,
    keeping the file name whole where it fits."""
    if len(path) <= limit:
        return path
    budget = limit - 1
    tokens = re.split(r"(?<=[/_.\-])", path)
    room = max(budget * 2 // 3, min(len(path.rsplit("/", 1)[-1]), budget - 8))
    tail = ""
    for token in reversed(tokens):
        if len(tail) + len(token) > room:
            break
        tail = token + tail
    if len(tail) < room // 2:  # one long name: cut inside it rather than show almost nothing
        tail = path[-room:]
    head = ""
    for token in tokens:
        if len(head) + len(token) > budget - len(tail):
            break
        head += token
    return (head or path[: budget - len(tail)]) + "…" + tail


def _breakable(text: str) -> str:
    """Escaped text with line-break opportunities after path separators, so captions wrap between words."""
    return re.sub(r"([/_.\-])", r"\1<wbr>", _e(text))


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}header{background:#233;color:#fff;padding:12px 20px}
nav a{color:#cde;margin-right:14px}main{padding:0 20px 40px}h2{border-bottom:1px solid #ccc;padding-top:16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:112px;font-size:11px;overflow:hidden}figure img{width:96px;height:96px;object-fit:contain;
background:#eee;display:block}figure .none{width:96px;height:96px;background:#eee;display:flex;align-items:center;
justify-content:center;color:#999}figcaption{overflow-wrap:anywhere}.hist rect{fill:#48a}
.hist text{font-size:9px;fill:#555}.hist .axis{stroke:#888;fill:none}.hist .threshold{stroke:#c33;stroke-dasharray:3 2}
.muted{color:#777}
.pager button{margin:0 4px}td.cm{min-width:28px}.bar{fill:#48a}
"""

SCRIPT = review_ui.SCRIPT + "document.body.setAttribute('data-ready', '1');\n"


def _absolute(location: Path | str) -> str:
    text = str(location)
    return text if "://" in text else str(Path(text).absolute())


@dataclass(frozen=True)
class Section:
    """An extra part of the report made elsewhere (e.g. the audit's): anchor id, nav title, finished HTML."""

    id: str
    title: str
    html: str


class _Thumbs:
    """Thumbnails made in parallel, each image at most once."""

    def __init__(self, results: Results, root: Path, px: int) -> None:
        self.results, self.root, self.px = results, root, px
        self.wanted: dict[str, None] = {}
        self.made: dict[str, str | None] = {}

    def want(self, path: str) -> str:
        self.wanted[path] = None
        return path

    def build(self) -> None:
        def one(path: str) -> tuple[str, str | None]:
            return path, thumbnail(self.results.location(path, self.root), self.px)

        with ThreadPoolExecutor(max_workers=8) as pool:
            self.made = dict(pool.map(one, list(self.wanted)))

    def figure(self, path: str, detail: str) -> str:
        """A thumbnail with its path (shortened in the middle, whole in the tooltip) and a detail line."""
        uri = self.made.get(path)
        img = f'<img loading="lazy" src="{uri}" alt="{_e(path)}">' if uri else '<div class="none">no image</div>'
        return (f'<figure title="{_e(path)} · {_e(detail)}">{img}<figcaption>{_breakable(short_path(path))}'
                f'<br>{_e(detail)}</figcaption></figure>')


def class_rows(results: Results, ok: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """Per class, its rows with a `score` column, best first, and the scores its histogram shows.

    Single-label: the rows labelled with it, their confidence. Multi-label: the rows whose `labels` hold it, with
    its own score; the histogram shows its score on every image (where its threshold cuts is visible).
    """
    return results.task.class_rows(results, ok)


def _label_counts(counts: pd.Series) -> str:
    """Multi-label: how many images got 0, 1, 2, … labels, as a table with bars."""
    top = max(1, int(counts.max())) if len(counts) else 1
    rows = "".join(f"<tr><td>{k}</td><td>{v}</td><td><svg width='200' height='10'><rect class='bar' width="
                   f"'{200 * v / top:.1f}' height='10'/></svg></td></tr>" for k, v in counts.items())
    return ("<h3>Labels per image</h3><table id='label-counts'><tr><th>labels</th><th>images</th><th></th></tr>"
            + rows + "</table>")


def review_queue(frame: pd.DataFrame, reviewed: pd.Series, planned: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """The rows to review, with a `reason`: `planned` (table path, reason: `autolabel queue`'s order) first, then
    every other row in review, lowest margin first; rows people reviewed (and error rows) are never in it."""
    waiting = ~reviewed & (frame["status"] != "error")
    review = frame[waiting & (frame["status"] == "review")].sort_values(["margin", "path"], kind="stable")
    position = {p: i for i, p in enumerate(frame["path"].astype(str))}
    first = [(position[p], why) for p, why in dict(planned).items() if p in position and waiting.iloc[position[p]]]
    head = frame.iloc[[i for i, _ in first]].assign(reason=[why for _, why in first])
    rest = review.drop(index=[i for i, _ in first], errors="ignore").assign(reason="")
    return pd.concat([head, rest])


def reviewed_rows(results: Results) -> pd.Series:
    """Rows a person labelled: a `reviewed_label` (import-review, the editor's corrections) or status reviewed."""
    frame = results.frame.reset_index(drop=True)
    given = frame["reviewed_label"] if "reviewed_label" in frame else pd.Series([None] * len(frame))
    has = [results.task.has_review(v) for v in given]
    return pd.Series(has, index=frame.index, dtype=bool) | (frame["status"] == "reviewed")


def _reviewed_per_class(results: Results, reviewed: pd.Series) -> dict[str, int]:
    """Reviews per class: the person's label(s), else (a run's `reviewed` row) the label the row carries."""
    frame = results.frame.reset_index(drop=True)
    counts = dict.fromkeys(results.classes, 0)
    task = results.task
    for i in np.flatnonzero(reviewed.to_numpy()):
        given = frame["reviewed_label"].iloc[i] if "reviewed_label" in frame else None
        names = task.names(task.parse(given))
        if names is None:
            names = task.names(task.row_label(frame, i))
        for name in names:
            if name in counts:
                counts[name] += 1
    return counts


@dataclass(frozen=True)
class _Page:
    """What the report shows, chosen before the thumbnails are made (all of them in one parallel pass)."""

    results: Results
    root: Path
    limits: ReportLimits
    frame: pd.DataFrame  # the table, indexed 0 … n-1
    reviewed: pd.Series  # rows a person labelled
    thumbs: _Thumbs
    by_class: dict[str, pd.DataFrame]  # class_rows
    histograms: dict[str, np.ndarray]
    per_class: int  # images per class gallery
    galleries: list[tuple[str, int, list[tuple[str, str]]]]  # (class, its rows, [(path, caption)])
    review: pd.DataFrame  # the whole review queue, planned rows first
    queue: pd.DataFrame  # the rows of it the page lists
    metrics: dict[str, Any] | None  # against the truth
    misclassified: list[tuple[str, str]]  # (path, caption)


def build_report(results: Results, root: Path, truth: Truth | None = None,
                 limits: ReportLimits | None = None, sections: Sequence[Section] = (),
                 planned: Sequence[tuple[str, str]] = ()) -> str:
    """The whole HTML document as a string; `planned`: (table path, reason) from `autolabel queue`, in its order."""
    page = _choose(results, root, truth, limits or ReportLimits(), planned)
    page.thumbs.build()
    measured = [_per_class_section(page) if page.metrics.confusion is None else _confusion_section(page),
                _misclassified_section(page)] if page.metrics else []
    return _document(page, [_summary_section(page), _galleries_section(page), _review_section(page),
                            _errors_section(page), *measured, *sections])


def _choose(results: Results, root: Path, truth: Truth | None, limits: ReportLimits,
            planned: Sequence[tuple[str, str]]) -> _Page:
    """The rows, thumbnails and metrics every section shows."""
    frame = results.frame.reset_index(drop=True)
    reviewed = reviewed_rows(results)
    thumbs = _Thumbs(results, root, limits.thumb_px)
    per_class = max(1, min(limits.gallery_per_class, limits.gallery_total // max(1, len(results.classes))))
    # Multi-label: an image is in each of its labels' gallery.
    by_class, histograms = class_rows(results, frame[frame["status"] != "error"])
    galleries = []
    for c in results.classes[: limits.gallery_total]:
        rows = by_class[c]
        picks = rows.iloc[np.unique(np.linspace(0, len(rows) - 1, min(per_class, len(rows))).astype(int))] \
            if len(rows) else rows
        galleries.append((c, len(rows), [(thumbs.want(p), f"{conf:.2f}")
                                         for p, conf in zip(picks["path"], picks["score"], strict=True)]))
    review = review_queue(frame, reviewed, planned)
    # Multi-label rows show their label list as a JSON array: kept as is by the editor, it reads back as a list.
    queue = review.assign(label=results.task.shown(review))[["path", "label", "confidence", "margin", "top_labels",
                                                             "reason"]].head(limits.review_rows)
    for p in queue["path"].head(limits.review_thumbs):
        thumbs.want(p)
    metrics, misclassified = _measure(results, frame, truth, limits, thumbs) if truth is not None else (None, [])
    return _Page(results, root, limits, frame, reviewed, thumbs, by_class, histograms, per_class, galleries, review,
                 queue, metrics, misclassified)


def _measure(results: Results, frame: pd.DataFrame, truth: Truth, limits: ReportLimits,
             thumbs: _Thumbs) -> tuple[Any, list[tuple[str, str]]]:
    """The metrics against the truth, and the most confident rows it contradicts (path, caption)."""
    mismatches = results.task.mismatches(frame, truth, results.classes)[: limits.misclassified_thumbs]
    return results.task.evaluate(results, truth), [(thumbs.want(p), caption) for p, caption in mismatches]


def _document(page: _Page, sections: Sequence[Section]) -> str:
    """The page: head, header with a link to each section, the sections in order, the review queue's script."""
    results = page.results
    model = results.metadata.get("model", {})
    nav = "".join(f"<a href='#{_e(x.id)}'>{_e(x.title)}</a>" for x in sections)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>autolabel report · "
            f"{_e(results.path.name)}</title><style>{CSS}{review_ui.CSS}</style></head><body>"
            f"<header><h1>autolabel report</h1><div>{_e(results.path)} · {len(page.frame)} images · "
            f"model {_e(model.get('id', 'unknown'))}</div><nav>{nav}</nav></header><main>"
            + "".join(x.html for x in sections) + f"</main><script>{SCRIPT}</script></body></html>")


def _summary_section(page: _Page) -> Section:
    """Images per status, labels per image (multi-label), the metrics' headline and the table of classes."""
    frame, reviewed = page.frame, page.reviewed
    counts = frame["status"].where(~reviewed | (frame["status"] == "error"), "reviewed").value_counts()
    parts = ["<section id='summary'><h2>Summary</h2><table><tr><th>status</th><th>images</th></tr>"]
    parts.extend(f"<tr><td>{status}</td><td>{int(counts.get(status, 0))}</td></tr>"
                 for status in ("accepted", "review", "reviewed", "error"))
    parts.append("</table>")
    label_counts = page.results.task.label_counts(frame[frame["status"] != "error"])
    if label_counts is not None:
        parts.append(_label_counts(label_counts))
    if page.metrics:
        parts.append(f"<p>Against {_e(page.metrics.truth)}: {_e(page.metrics.headline())}; "
                     f"{page.metrics.excluded.total} rows excluded.</p>")
    parts.append(_classes_table(page))
    return Section("summary", "summary", "".join(parts) + "</section>")


def _classes_table(page: _Page) -> str:
    """Per class: images, accepted, in review, reviewed, threshold and the histogram of its scores."""
    results = page.results
    per_class_reviewed = _reviewed_per_class(results, page.reviewed)
    thresholds = results.thresholds
    parts = ["<table id='classes'><tr><th>class</th><th>images</th><th>accepted</th><th>review</th>"
             "<th>reviewed</th><th>threshold</th>"
             f"<th>{results.task.score_caption}</th></tr>"]
    for c in results.classes:
        rows = page.by_class[c]
        parts.append(f"<tr><td>{_e(c)}</td><td>{len(rows)}</td><td>{int((rows.status == 'accepted').sum())}</td>"
                     f"<td>{int((rows.status == 'review').sum())}</td><td>{per_class_reviewed[c]}</td>"
                     f"<td>{thresholds.get(c, '')}</td>"
                     f"<td>{histogram_svg(page.histograms[c], thresholds.get(c))}</td></tr>")
    return "".join(parts) + "</table>"


def _galleries_section(page: _Page) -> Section:
    """Up to `per_class` thumbnails per class, from the most to the least confident."""
    limits = page.limits
    parts = [f"<section id='galleries'><h2>Per-class galleries</h2><p class='muted'>Up to {page.per_class} images "
             "per class, spread from the most to the least confident.</p>"]
    if len(page.results.classes) > limits.gallery_total:
        parts.append(f"<p class='muted'>Galleries shown for the first {limits.gallery_total} classes.</p>")
    for c, n, figs in page.galleries:
        parts.append(f"<h3>{_e(c)} <span class='muted'>({n})</span></h3><div class='grid'>"
                     + "".join(page.thumbs.figure(p, cap) for p, cap in figs) + "</div>")
    return Section("galleries", "galleries", "".join(parts) + "</section>")


def _review_section(page: _Page) -> Section:
    """The review queue and its editor (review_ui)."""
    results, review = page.results, page.review
    classes = results.classes
    other = (results.metadata.get("other") or {}).get("name")
    rows = [review_ui.QueueRow(p, _absolute(results.location(p, page.root)), lab, float(conf), float(m),
                               review_ui.candidates(list(tops), classes, other), page.thumbs.made.get(p), why)
            for p, lab, conf, m, tops, why in page.queue.itertuples(index=False)]
    report_id = hashlib.sha1(f"{results.path.absolute()}:{len(page.frame)}".encode()).hexdigest()[:12]
    return Section("review", "review queue", review_ui.section(
        rows, classes, len(review), report_id, results.task.multiple, int((review["reason"] != "").sum())))


def _errors_section(page: _Page) -> Section:
    """The rows that failed, with their error."""
    errors, cap = page.frame[page.frame["status"] == "error"], page.limits.error_rows
    parts = [f"<section id='errors'><h2>Errors ({len(errors)})</h2><table><tr><th>path</th><th>error</th></tr>"]
    parts.extend(f"<tr><td>{_e(p)}</td><td>{_e(err)}</td></tr>"
                 for p, err in errors[["path", "error"]].head(cap).itertuples(index=False))
    parts.append("</table>")
    if len(errors) > cap:
        parts.append(f"<p class='muted'>… and {len(errors) - cap} more.</p>")
    return Section("errors", "errors", "".join(parts) + "</section>")


def _per_class_section(page: _Page) -> Section:
    """Multi-label: precision, recall, F1 and support of each class."""
    assert page.metrics is not None
    parts = ["<section id='per-class'><h2>Per class</h2><table><tr><th>class</th><th>precision</th>"
             "<th>recall</th><th>F1</th><th>support</th></tr>"]
    parts.extend(f"<tr><td>{_e(c)}</td><td>{row.precision:.3f}</td><td>{row.recall:.3f}</td>"
                 f"<td>{row.f1:.3f}</td><td>{row.support}</td></tr>"
                 for c, row in page.metrics.per_class.items())
    return Section("per-class", "per class", "".join(parts) + "</table></section>")


def _confusion_section(page: _Page) -> Section:
    """Single-label: the confusion matrix, each cell shaded by its count."""
    assert page.metrics is not None
    classes, matrix = page.results.classes, page.metrics.confusion.matrix
    top = max(1, max(max(r) for r in matrix) if matrix else 1)
    parts = ["<section id='confusion'><h2>Confusion matrix</h2><p class='muted'>Rows: truth; columns: "
             "predicted.</p><table><tr><th></th>" + "".join(f"<th>{_e(c)}</th>" for c in classes) + "</tr>"]
    for c, row in zip(classes, matrix, strict=True):
        cells = "".join(f"<td class='cm' style='background:rgba(68,136,170,{v / top:.2f})'>{v}</td>" for v in row)
        parts.append(f"<tr><th>{_e(c)}</th>{cells}</tr>")
    return Section("confusion", "confusion", "".join(parts) + "</table></section>")


def _misclassified_section(page: _Page) -> Section:
    """The most confident rows the truth contradicts, with their image."""
    return Section("misclassified", "misclassified",
                   f"<section id='misclassified'><h2>Misclassified ({len(page.misclassified)} shown)</h2>"
                   "<div class='grid'>" + "".join(page.thumbs.figure(p, cap) for p, cap in page.misclassified)
                   + "</div></section>")
