"""What every exporter shares: the rows to export, safe unique file names, linking images into --out."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from autolabel.errors import UsageError
from autolabel.results import Results

MARKER = ".autolabel-export.json"
STATUSES = ("all", "accepted", "review", "reviewed")
LINKS = ("symlink", "hardlink", "copy")
_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


@dataclass(frozen=True)
class ExportRow:
    """One labelled image to export."""

    path: str  # as in the table
    source: Path  # the image file
    name: str  # a safe, unique, flat file name for it inside the export
    label: str  # the human label on `reviewed` rows, else the model's
    confidence: float  # the model's top-1 probability
    status: str
    model_label: str = ""  # the model's top-1 class (differs from `label` where a person overruled it)

    @property
    def human(self) -> bool:
        """A person gave this label (the image was among the reviewed examples)."""
        return self.status == "reviewed"


@dataclass
class ExportContext:
    """The table, the rows chosen for export and the options, handed to a format's writer."""

    results: Results
    out: Path
    rows: list[ExportRow]
    link: str = "symlink"
    url_prefix: str | None = None
    images_root: Path = field(default_factory=Path.cwd)
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Class names in spec order."""
        return self.results.classes

    @property
    def model_version(self) -> str:
        """Model id (and fingerprint) for tools that record which model predicted."""
        return model_version(self.results)

    def target(self, *parts: str) -> Path:
        """A path inside --out; anything that would land outside is refused."""
        path = self.out.joinpath(*parts)
        if not path.resolve().is_relative_to(self.out.resolve()):
            raise UsageError(f"refusing to write outside --out: {path}")
        return path

    def place(self, row: ExportRow, *parts: str) -> bool:
        """Link or copy a row's image to out/parts; False (and noted) when the image is missing."""
        dst = self.target(*parts)
        if not row.source.is_file():
            self.skipped.append(f"{row.path}: image not found at {row.source}")
            return False
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if self.link == "symlink":
            os.symlink(row.source.resolve(), dst)
        elif self.link == "hardlink":
            try:
                os.link(row.source, dst)
            except OSError as exc:
                raise UsageError(f"cannot hard-link {row.source} into {self.out} ({exc.strerror}); "
                                 "use --link copy or symlink") from None
        else:
            shutil.copy2(row.source, dst)
        return True

    def write_text(self, name: str, text: str) -> Path:
        """Write a file inside --out."""
        path = self.target(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.written.append(name)
        return path


def model_version(results: Results) -> str:
    """The run's model id (and fingerprint), as tools that record which model predicted show it."""
    model = results.metadata.get("model", {})
    name = model.get("id", "autolabel")
    return f"{name}@{model['fingerprint']}" if model.get("fingerprint") else str(name)


def safe_names(paths: Sequence[str]) -> list[str]:
    """Flat file names for table paths: no folders, no `..`, no absolute roots; stems unique ignoring case."""
    names, seen = [], set()
    for given in paths:
        pure = PurePosixPath(str(given).replace("\\", "/"))
        parts = [p for p in pure.parts if p not in ("/", "", ".")]
        parts = ["__up" if p == ".." else p for p in parts] or ["image"]
        suffix = PurePosixPath(parts[-1]).suffix.lower()
        parts[-1] = parts[-1][: -len(suffix)] if suffix else parts[-1]
        stem = "__".join(_UNSAFE.sub("_", unicodedata.normalize("NFC", p)).strip("._") or "_" for p in parts)
        if len(stem) > 120:
            stem = stem[:100] + "-" + hashlib.sha1(stem.encode()).hexdigest()[:12]
        candidate, n = stem, 1
        while candidate.casefold() in seen:
            n += 1
            candidate = f"{stem}~{n}"
        seen.add(candidate.casefold())
        names.append(candidate + (suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix or "") else ".jpg"))
    return names


def folder_name(label: str) -> str:
    """A class name usable as one folder name (slashes and dot-only names replaced)."""
    name = unicodedata.normalize("NFC", label).replace("/", "∕").replace("\\", "∖").replace("\0", "")
    return "_" + name if name in ("", ".", "..") or name.startswith(".") else name


def export_names(results: Results) -> dict[str, str]:
    """Table path → the file name every export gives it (computed over all non-error rows, so it does not
    depend on --status and import-review can map a tool's names back)."""
    paths = [str(p) for p in results.frame.loc[results.frame["status"] != "error", "path"]]
    return dict(zip(paths, safe_names(paths), strict=True))


def export_rows(results: Results, status: str, images_root: Path) -> list[ExportRow]:
    """Non-error rows with the chosen status, each with a unique safe name (names do not depend on --status)."""
    if status not in STATUSES:
        raise UsageError(f"--status must be one of {', '.join(STATUSES)}")
    frame = results.frame
    ok = frame[frame["status"] != "error"]
    names = export_names(results)
    rows = []
    columns = ok[["path", "label", "confidence", "status", "top_labels"]].itertuples(index=False)
    for path, label, conf, stat, tops in columns:
        if status == "all" or stat == status:
            model = str(tops[0]) if len(tops) else str(label)
            rows.append(ExportRow(path=str(path), source=results.location(str(path), images_root),
                                  name=names[str(path)], label=str(label), confidence=float(conf), status=str(stat),
                                  model_label=model))
    return rows


def prepare_out(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty --out unless --overwrite; an earlier export of ours is cleared first."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"--out {out}: folder is not empty; pass --overwrite or choose an empty folder")
        if (out / MARKER).exists():
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def write_marker(ctx: ExportContext, fmt: str, marker: bool = True) -> dict[str, Any]:
    """A small record of the export (format, counts, source table), also used to recognise our own folders.

    Folder-per-class layouts get none: their importers (Datumaro's imagenet) reject any non-image file.
    """
    info = {"format": fmt, "table": str(ctx.results.path), "rows": len(ctx.rows),
            "skipped": ctx.skipped, "files": sorted(ctx.written)}
    if marker:
        (ctx.out / MARKER).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return info
