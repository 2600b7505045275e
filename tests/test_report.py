"""The HTML report: well-formed, every section present, bounded size at 50,000 rows, opens in a browser."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.evaluate import Truth
from autolabel.report import build_report, histogram_svg, short_path
from autolabel.results import Results

from .conftest import noise_image

VOID = {"meta", "img", "br", "wbr", "hr", "input", "link", "rect"}
SECTIONS = ("summary", "galleries", "review", "errors")


class Checker(HTMLParser):
    """Collects ids and checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ids: set[str] = set()
        self.images = 0
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img" and (attrs.get("src") or "").startswith("data:image/jpeg;base64,"):
            self.images += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def check(document: str) -> Checker:
    checker = Checker()
    checker.feed(document)
    checker.close()
    assert checker.stack == [], checker.stack
    return checker


def synthetic(n: int, root: Path, n_images: int, classes: list[str]) -> tuple[Results, Truth]:
    """n rows over n_images real files (paths are distinct symlinks), some errors and reviews."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        noise_image(i, (64, 48)).save(root / f"src{i}.png")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        name = f"img{i:06d}.png"
        os.symlink(root / f"src{i % n_images}.png", root / name)
        paths.append(name)
    labels = rng.choice(classes, n)
    conf = rng.uniform(0.2, 1.0, n)
    status = np.where(rng.random(n) < 0.02, "error", np.where(conf > 0.6, "accepted", "review"))
    frame = pd.DataFrame({
        "path": paths,
        "label": [None if s == "error" else c for c, s in zip(labels, status, strict=True)],
        "confidence": conf, "margin": conf / 3, "status": status,
        "top_labels": [[c, classes[0]] for c in labels], "top_scores": [[0.6, 0.2]] * n,
        "error": [f"bad <file> & \"{i}\"" if s == "error" else None for i, s in enumerate(status)],
    })
    truth = Truth([c if rng.random() < 0.8 else classes[1] for c in labels], "t")
    meta = {"classes": classes, "thresholds": dict.fromkeys(classes, 0.6), "model": {"id": "tiny <model>"}}
    return Results(path=Path("labels.parquet"), frame=frame, classes=classes, metadata=meta), truth


def test_report_has_every_section_and_escapes(tmp_path: Path) -> None:
    classes = ["cat", "dog", "a <b> & \"c\""]
    results, truth = synthetic(300, tmp_path / "imgs", 300, classes)
    document = build_report(results, tmp_path / "imgs", truth)
    checker = check(document)
    assert set(SECTIONS) | {"confusion", "misclassified", "review-data"} <= checker.ids
    assert checker.images > 50
    assert "a &lt;b&gt; &amp; &quot;c&quot;" in document and "b" not in checker.tags  # the class name stays text
    without_truth = check(build_report(results, tmp_path / "imgs"))
    assert "confusion" not in without_truth.ids


def test_report_stays_bounded_at_50000_rows(tmp_path: Path) -> None:
    classes = [f"class {i}" for i in range(40)]
    results, truth = synthetic(50_000, tmp_path / "imgs", 2000, classes)
    document = build_report(results, tmp_path / "imgs", truth)
    checker = check(document)
    assert set(SECTIONS) <= checker.ids
    size = len(document.encode())
    assert size < 8_000_000, size
    assert checker.images <= 600 + 60 + 60


def test_report_cli_on_a_real_run_and_in_a_browser(tmp_path: Path, image_folder: Path, labels_yaml: Path,
                                                   tiny_clip: Path) -> None:
    (image_folder / "broken.png").write_bytes(b"")
    out = tmp_path / "o.parquet"
    assert CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out", str(out),
                                     "--model", str(tiny_clip), "-q"]).exit_code == 0
    html_path = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["report", str(out), "--out", str(html_path), "--truth", "folder"])
    assert result.exit_code == 0, result.output
    checker = check(html_path.read_text())
    assert checker.images == 6  # thumbnails found through the run's SOURCE folder
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium here (apt-get install chromium) to render the report headless")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", html_path.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout
    assert 'data-ready="1"' in dom  # the page's script ran to its end without an error
    assert "page 1 of" in dom


def _svg(values: list[float], threshold: float | None = None):
    import xml.etree.ElementTree as ET

    return ET.fromstring(histogram_svg(np.asarray(values, dtype=float), threshold))


def test_histogram_has_axes_counts_per_bar_and_the_threshold() -> None:
    svg = _svg([0.12, 0.14, 0.55, 0.97, 0.98, 0.99], threshold=0.6)
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in svg.iter("text")] + [t.text for t in svg.iter(f"{ns}text")]
    assert texts == ["0", "0.5", "1", "3", "0"]  # x ticks, then the y axis: the largest bin and zero
    titles = [t.text for t in svg.iter("title")]
    assert titles == ["0.10–0.15: 2 images", "0.55–0.60: 1 images", "0.95–1.00: 3 images", "threshold 0.6"]
    assert svg.get("aria-label") == "confidence histogram of 6 images"


def test_histogram_switches_to_log_scale_when_one_bin_dominates() -> None:
    dominated = _svg([0.99] * 500 + [0.5, 0.3, 0.31])
    assert dominated.get("aria-label") == "confidence histogram of 503 images, log scale"
    heights = sorted(float(r.get("height")) for r in dominated.iter("rect"))
    assert heights[0] > heights[-1] / 10  # a bin of 1 stays visible next to one of 500
    assert "log scale" in [t.text for t in dominated.iter("text")]
    balanced = _svg([0.2, 0.3, 0.3, 0.9])
    assert "log scale" not in [t.text for t in balanced.iter("text")]


def test_short_path_cuts_the_middle_and_keeps_the_file_name() -> None:
    long = "survey_2024/site_alpha_north/camera_trap_07/IMG_000123.JPG"
    assert short_path(long) == "survey_2024/site_…trap_07/IMG_000123.JPG"
    assert short_path("x" * 30 + "/" + "y" * 30 + ".png") == "x" * 8 + "…" + "y" * 27 + ".png"
    assert short_path("a/b.png") == "a/b.png"


def test_captions_wrap_at_separators_and_keep_the_full_path(tmp_path: Path) -> None:
    results, _ = synthetic(3, tmp_path / "imgs", 3, ["cat", "dog"])
    long = "survey_2024/site_alpha_north/camera_trap_07/IMG_000123.png"
    (tmp_path / "imgs" / long).parent.mkdir(parents=True)
    os.symlink(tmp_path / "imgs" / "src0.png", tmp_path / "imgs" / long)
    results.frame.loc[0, ["path", "status", "label"]] = [long, "accepted", "cat"]
    document = build_report(results, tmp_path / "imgs")
    assert "word-break:break-all" not in document
    conf = results.frame.loc[0, "confidence"]
    assert (f'<figure title="{long} · {conf:.2f}">' in document)
    assert ("<figcaption>survey_<wbr>2024/<wbr>site_<wbr>…trap_<wbr>07/<wbr>IMG_<wbr>000123.<wbr>png"
            f"<br>{conf:.2f}</figcaption>") in document


@pytest.mark.parametrize(("where", "message"), [
    ("{tmp}/file.txt/report.html", "{tmp}/file.txt is a file, not a folder; choose another location"),
    ("/proc/report.html", "cannot write there"),
    ("{tmp}/" + "r" * 256 + ".html", "is longer than 255 bytes"),
    ("{tmp}/o.parquet", "is {tmp}/o.parquet, an input of this command; write to another file"),
])
def test_report_to_an_unwritable_place_is_refused_before_any_work(tmp_path: Path, where: str, message: str) -> None:
    results, _ = synthetic(5, tmp_path / "imgs", 5, ["cat", "dog"])
    results.frame.to_parquet(tmp_path / "o.parquet")
    spec = tmp_path / "spec.yaml"
    spec.write_text("templates: ['{label}']\nclasses: [cat, dog]\n")
    (tmp_path / "file.txt").write_text("user data")
    target = where.format(tmp=tmp_path)
    result = CliRunner().invoke(main, ["report", str(tmp_path / "o.parquet"), "--labels", str(spec), "--out", target])
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(f"error: --out {target}: ") and message.format(tmp=tmp_path) in result.stderr
    assert pd.read_parquet(tmp_path / "o.parquet").shape == (5, 8)
