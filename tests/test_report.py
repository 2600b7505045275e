"""The HTML report: well-formed, every section present, bounded size at 50,000 rows, opens in a browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.review.report import build_report, histogram_svg, short_path
from autolabel.table.results import Results
from autolabel.task.single import Truth

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
    assert set(SECTIONS) | {"confusion", "misclassified", "rq-data"} <= checker.ids
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


def download_corrections(driver, downloads: Path) -> Path:
    """Click the review editor's download button; the CSV's path once the browser has written it (up to a minute)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "rq-download").click()
    target = downloads / "corrections.csv"
    deadline = time.monotonic() + 60
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return target


def _driver(download_dir: Path, profile: Path):  # -> selenium WebDriver
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip("no Chromium/ChromeDriver here (apt-get install chromium chromium-driver) to drive the report")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    from selenium.webdriver.chrome.service import Service

    return webdriver.Chrome(options=options, service=Service(driver_path))


def test_review_queue_edited_by_keyboard_downloads_corrections_that_run_and_import_accept(
        tmp_path: Path, image_folder: Path, tiny_clip: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("templates: ['a photo of a {label}.']\nclasses: [cat, dog, bird, car, tree]\nthreshold: 0.99\n")
    out = tmp_path / "o.parquet"
    assert CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(spec), "--out", str(out), "--model",
                                     str(tiny_clip), "-q"]).exit_code == 0
    page = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", str(out), "--out", str(page)]).exit_code == 0
    data = json.loads(re.search(r"id='rq-data'>(.*?)</script>", page.read_text(), re.S).group(1))
    rows, labels = data["rows"], data["labels"]
    assert len(rows) == 6  # every row is uncertain at a 0.99 threshold
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = _driver(downloads, tmp_path / "profile")
    try:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        driver.get(page.as_uri())
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys("1", Keys.ARROW_DOWN)  # outside the queue the keys do nothing
        assert driver.find_element(By.ID, "rq-count").text == "0"
        driver.find_element(By.CSS_SELECTOR, "#rq-0 .meta").click()  # into the queue, on row 0
        body.send_keys("2")  # row 0: its second candidate
        body.send_keys(Keys.ENTER)  # row 1: keep the model's label
        body.send_keys(Keys.ARROW_DOWN)  # row 2: skipped
        body.send_keys("1", Keys.ARROW_UP, "0")  # row 3: picked, then back to it… and undone
        body.send_keys(Keys.ARROW_DOWN, Keys.ARROW_DOWN)  # row 4
        driver.find_elements(By.CSS_SELECTOR, "#rq-4 button")[2].click()  # row 4: third candidate, by mouse
        assert driver.find_element(By.ID, "rq-count").text == "3"
        target = download_corrections(driver, downloads)
    finally:
        driver.quit()
    got = pd.read_csv(target)
    expected = [(rows[0][1], labels[rows[0][5][1]]), (rows[1][1], rows[1][2]), (rows[4][1], labels[rows[4][5][2]])]
    assert list(got.columns) == ["path", "reviewed_label"]
    assert list(zip(got.path, got.reviewed_label, strict=True)) == expected
    merged = CliRunner().invoke(main, ["import-review", str(target), "--into", str(out)])
    assert merged.exit_code == 0, merged.output
    table = pd.read_parquet(out)
    by_file = dict(zip([str(image_folder / p) for p in table.path], table.reviewed_label, strict=True))
    assert {k: by_file[k] for k, _ in expected} == dict(expected)
    again = tmp_path / "again.parquet"
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(spec), "--out", str(again),
                                       "--model", str(tiny_clip), "--examples", str(target), "-q"])
    assert result.exit_code == 0, result.output
    second = pd.read_parquet(again)
    assert sorted(second.loc[second.status == "reviewed", "path"]) == sorted(
        Path(k).relative_to(image_folder).as_posix() for k, _ in expected)


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
