"""The audit's part of the HTML report: duplicate groups with thumbnails, top label issues, outliers, balance."""

from __future__ import annotations

import html
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from autolabel.review.report import Section


@dataclass(frozen=True)
class AuditLimits:
    """Caps that keep the section small whatever the number of findings."""

    groups: int = 20
    per_group: int = 8
    label_issues: int = 30
    outliers: int = 20
    leakage_rows: int = 200


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _figure(uri: str | None, path: str, caption: str) -> str:
    img = f'<img loading="lazy" src="{uri}" alt="{_e(path)}">' if uri else '<div class="none">no image</div>'
    return f"<figure>{img}<figcaption>{_e(caption)}</figcaption></figure>"


def audit_section(findings: pd.DataFrame, thumbnail: Callable[[str], str | None],
                  limits: AuditLimits | None = None) -> Section:
    """The report section for a FINDINGS table; `thumbnail(path)` gives a data URI (or None) per image."""
    limits = limits or AuditLimits()
    kind = findings["kind"].astype(str)
    dups = findings[kind == "duplicate"]
    issues = findings[kind == "label_issue"].sort_values("score", ascending=False, kind="stable")
    outliers = findings[kind == "outlier"].sort_values("score", ascending=False, kind="stable")
    leakage = findings[kind == "leakage"]
    summary = findings[kind == "summary"]

    groups: dict[Any, list[str]] = {}
    for row in dups.itertuples(index=False):
        key = int(row.group) if "group" in dups.columns and pd.notna(row.group) else (row.path,)
        members = groups.setdefault(key, [])
        members.extend(p for p in (row.path, row.other_path) if p not in members)
    biggest = sorted(groups.items(), key=lambda kv: -len(kv[1]))[: limits.groups]
    wanted = {p for _, members in biggest for p in members[: limits.per_group]}
    wanted |= set(issues["path"].head(limits.label_issues)) | set(outliers["path"].head(limits.outliers))
    with ThreadPoolExecutor(max_workers=8) as pool:
        uris = dict(zip(sorted(wanted), pool.map(thumbnail, sorted(wanted)), strict=True))

    parts = [f"<section id='audit'><h2>Audit</h2><p>{len(groups)} duplicate groups ({len(dups)} pairs), "
             f"{len(leakage)} pairs across splits, {len(issues)} probable label issues, {len(outliers)} outliers."
             "</p>"]
    parts.append(f"<h3>Duplicate groups</h3><p class='muted'>The {len(biggest)} largest groups; up to "
                 f"{limits.per_group} images each.</p>")
    parts.append("<div class='grid'>")
    for key, members in biggest:
        title = f"group {key}" if not isinstance(key, tuple) else "group"
        parts.append(f"<div style='border:1px solid #ccc;padding:4px'><div class='muted'>{_e(title)} "
                     f"({len(members)} images)</div><div class='grid'>"
                     + "".join(_figure(uris.get(p), p, p) for p in members[: limits.per_group]) + "</div></div>")
    parts.append("</div>")
    if len(leakage):
        parts.append("<h3>Across splits (leakage)</h3><table><tr><th>path</th><th>other path</th><th>detail</th></tr>")
        for row in leakage.head(limits.leakage_rows).itertuples(index=False):
            parts.append(f"<tr><td>{_e(row.path)}</td><td>{_e(row.other_path)}</td><td>{_e(row.detail)}</td></tr>")
        parts.append("</table>")
    parts.append(f"<h3>Top label issues</h3><p class='muted'>Most suspicious first; the first "
                 f"{min(len(issues), limits.label_issues)} of {len(issues)}.</p><div class='grid'>")
    for row in issues.head(limits.label_issues).itertuples(index=False):
        parts.append(_figure(uris.get(row.path), row.path,
                             f"{row.path} · {getattr(row, 'label', '')} → {getattr(row, 'suggested', '')} "
                             f"({row.score:.2f})"))
    parts.append("</div>")
    parts.append("<h3>Outliers</h3><div class='grid'>" + "".join(
        _figure(uris.get(row.path), row.path, f"{row.path} · {row.score:.3f}")
        for row in outliers.head(limits.outliers).itertuples(index=False)) + "</div>")
    if len(summary):
        parts.append("<h3>Class balance</h3><table>" + "".join(
            f"<tr><td>{_e(row.detail)}</td></tr>" for row in summary.itertuples(index=False)) + "</table>")
    parts.append("</section>")
    return Section("audit", "audit", "".join(parts))
