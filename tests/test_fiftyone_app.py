"""Our `--to fiftyone` export loaded by FiftyOne itself, with its bundled MongoDB (from .venv-apps)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.review.exporters.base import safe_names

from .apps import FIFTYONE_PYTHON, app
from .conftest import noise_image

pytestmark = pytest.mark.apps
CLASSES = ["red car", "a/b", "ünïcödé", "<tag> & \"quote\""]
LOAD = """
import json, sys
from pathlib import Path
import fiftyone as fo
dataset = fo.Dataset.from_dir(sys.argv[1], fo.types.FiftyOneImageClassificationDataset, label_field="prediction")
print(json.dumps({
    "version": fo.__version__,
    "classes": dataset.default_classes,
    "samples": {Path(s.filepath).name: [s.prediction.label, s.prediction.confidence] for s in dataset},
}))
"""


def _stop_databases(folder: Path, seconds: float = 15) -> None:
    """FiftyOne stops its mongod when the last client exits; make sure the one on our folder is gone."""
    deadline = time.monotonic() + seconds
    while True:
        pids = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(folder).encode() in _read(p) and b"mongod" in _read(p)]
        if not pids:
            return
        if time.monotonic() > deadline:
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.5)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.fixture()
def python() -> Path:
    """The python of the venv with FiftyOne; asked for first, so a skip costs nothing."""
    return app(FIFTYONE_PYTHON, "FiftyOne with its database (fiftyone-db)")


def test_fiftyone_loads_the_export_with_labels_and_confidences(python: Path, tmp_path: Path, tiny_clip: Path) -> None:
    images = tmp_path / "images"
    for i in range(12):
        path = images / ("x" if i % 2 else "y") / f"{i}.{'png' if i % 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        noise_image(i).save(path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(json.dumps({"templates": ["a photo of a {label}."], "classes": CLASSES}))
    table = tmp_path / "labels.parquet"
    runner = CliRunner()
    assert runner.invoke(main, ["run", str(images), "--labels", str(spec), "--out", str(table), "--model",
                                str(tiny_clip), "-q"]).exit_code == 0
    exported = runner.invoke(main, ["export", str(table), "--to", "fiftyone", "--out", str(tmp_path / "fo")])
    assert exported.exit_code == 0, exported.output
    database = tmp_path / "fiftyone-db"
    env = {**os.environ, "FIFTYONE_DATABASE_DIR": str(database), "FIFTYONE_DO_NOT_TRACK": "true",
           "FIFTYONE_DATABASE_VALIDATION": "false"}
    env.pop("FIFTYONE_DATABASE_URI", None)  # its own bundled database, not a server somewhere
    try:
        loaded = subprocess.run([str(python), "-c", LOAD, str(tmp_path / "fo")], env=env, capture_output=True,
                                text=True, timeout=180)
    finally:
        _stop_databases(database)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    got = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert got["classes"] == CLASSES
    rows = pd.read_parquet(table)
    names = safe_names(list(rows.path))
    assert set(got["samples"]) == set(names)
    for name, row in zip(names, rows.itertuples(), strict=True):
        label, confidence = got["samples"][name]
        assert label == row.label and confidence == pytest.approx(row.confidence)
    assert any(database.iterdir())  # the data lived in its own MongoDB
