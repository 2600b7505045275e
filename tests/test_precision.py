"""Precision (auto: native bf16 on the CPU; int8 on ONNX Runtime); the lazy model (a cached re-run never loads it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main
from autolabel.core import precision

from .conftest import ROOT, TINY_SHAPES

MODEL = TINY_SHAPES / "model"
SPEC = TINY_SHAPES / "labels.yaml"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 fresh tiny-shapes images; their manifest (path, truth, …) is the SOURCE."""
    from make_images import make_images

    return make_images(tmp_path_factory.mktemp("shapes"), n=24, seed=23)


def run(source: Path, out: Path, *options: str) -> dict:
    """`autolabel run` in this process; the summary JSON."""
    summary = out.with_suffix(".json")
    result = CliRunner().invoke(main, ["run", str(source), "--labels", str(SPEC), "--out", str(out), "--model",
                                       str(MODEL), "--summary-json", str(summary), "-q", *options])
    assert result.exit_code == 0, result.output
    return json.loads(summary.read_text())


def agree(a: Path, b: Path) -> tuple[float, float, float]:
    """Share of equal labels, of equal statuses, and the largest confidence difference."""
    x, y = pd.read_parquet(a), pd.read_parquet(b)
    assert list(x.path) == list(y.path)
    return (float((x.label == y.label).mean()), float((x.status == y.status).mean()),
            float((x.confidence - y.confidence).abs().max()))


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AUTOLABEL_CPU_BF16")  # the suite pins fp32 (conftest)
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor : 0\nflags : fpu sse2 avx avx2 fma\n")
    sapphire = tmp_path / "spr"
    sapphire.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert not precision.native_bf16(avx2) and precision.native_bf16(sapphire)
    assert not precision.native_bf16(tmp_path / "missing")
    monkeypatch.setenv("AUTOLABEL_CPU_BF16", "1")
    assert precision.native_bf16(avx2)


@pytest.mark.parametrize(("native", "device", "chosen"), [
    (True, "cpu", "bf16"), (False, "cpu", "fp32"), (True, "cuda", "fp16"), (True, "mps", "fp32")])
def test_auto_picks_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native: bool, device: str, chosen: str) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    assert precision.resolve("auto", device) == chosen
    assert precision.resolve("fp32", device) == "fp32"


def test_auto_on_a_native_bf16_cpu_runs_bf16_with_fp32_labels(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    """bf16 is emulated on this CPU (slow but exact in kind): faking the detection tests the branch."""
    fp32 = run(shapes, tmp_path / "fp32.parquet", "--precision", "fp32")
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    auto = run(shapes, tmp_path / "auto.parquet")
    assert fp32["model"]["precision"] == "float32" and fp32["model"]["precision_choice"] == "fp32 (asked for)"
    assert auto["model"]["precision"] == "bfloat16"
    assert auto["model"]["precision_choice"] == "bf16 (auto: this CPU has native bf16)"
    assert auto["encoded"] == 24  # the cache keys embeddings by precision: fp32's are not reused
    labels, statuses, confidence = agree(tmp_path / "fp32.parquet", tmp_path / "auto.parquet")
    assert labels == 1.0 and statuses >= 0.95 and confidence <= 0.02


def test_a_rerun_the_cache_answers_imports_neither_torch_nor_transformers(shapes: Path, tmp_path: Path) -> None:
    """Also `Labeler()` (until an image misses the cache) and the table commands (`queue` too) never import them."""
    first = run(shapes, tmp_path / "first.parquet")
    assert first["encoded"] == 24
    code = f"""
import json, sys
from click.testing import CliRunner
from autolabel import Labeler
from autolabel.cli import main
def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
cli("run", {str(shapes)!r}, "--labels", {str(SPEC)!r}, "--out", {str(tmp_path / "again.parquet")!r},
    "--model", {str(MODEL)!r}, "--summary-json", {str(tmp_path / "again.json")!r}, "-q")
labeler = Labeler(model={str(MODEL)!r}, spec={str(SPEC)!r})
frame = labeler.label([{str(shapes.parent / "batch0" / "part0" / "img00000.jpg")!r}])
first, again = {str(tmp_path / "first.parquet")!r}, {str(tmp_path / "again.parquet")!r}
cli("eval", again, "--truth", "truth")
cli("report", again, "--out", {str(tmp_path / "report.html")!r})
cli("diff", first, again)
cli("export", again, "--to", "imagefolder", "--out", {str(tmp_path / "exported")!r})
cli("queue", again, "--budget", "4", "--out", {str(tmp_path / "queue.csv")!r})
print(json.dumps({{"heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules),
                  "label": frame.label[0], "loaded": labeler.model.loaded}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen == {"heavy": [], "label": pd.read_parquet(tmp_path / "first.parquet").label[0], "loaded": False}
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["encoded"] == 0 and again["cached"] == 24 and again["model"] == first["model"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "first.parquet"),
                                  pd.read_parquet(tmp_path / "again.parquet"))


def test_labeler_loads_the_model_on_the_first_miss_only(tiny_clip: Path, image_folder: Path) -> None:
    import autolabel

    labeler = autolabel.Labeler(model=str(tiny_clip), classes=["cat", "dog"])
    assert not labeler.model.loaded
    frame = labeler.label([image_folder / "c.png"])
    assert labeler.model.loaded and frame.status[0] in ("accepted", "review")


def test_an_uncached_hub_model_on_an_offline_machine_fails_at_once(tmp_path: Path, image_folder: Path,
                                                                   labels_yaml: Path, monkeypatch) -> None:
    """No HF_HUB_OFFLINE, the Hub unreachable (a closed port): one line, exit 2, no minutes of retries."""
    import socket

    from huggingface_hub import constants

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                                       str(tmp_path / "out.parquet"), "--model", "autolabel-tests/not-cached", "-q"])
    assert time.perf_counter() - started < 5
    assert result.exit_code == 2
    assert result.output == (f"error: model 'autolabel-tests/not-cached': not in the Hugging Face cache, and the Hub "
                             f"(http://127.0.0.1:{port}) cannot be reached (Connection refused); pass --model PATH to "
                             "a local checkpoint folder, or download it once with network access\n")


def _hub_error(endpoint: str, reason: str) -> str:
    return (f"model 'autolabel-tests/not-cached': not in the Hugging Face cache, and the Hub ({endpoint}) cannot be "
            f"reached ({reason}); pass --model PATH to a local checkpoint folder, or download it once with network "
            "access")


def test_a_hub_that_takes_connections_but_never_answers_is_unreachable(monkeypatch) -> None:
    """A proxy or firewall that accepts every connection (an unroutable HF_ENDPOINT behind one) and stays silent:
    the same clean line after the short timeout, not transformers retrying for minutes."""
    import socket

    from huggingface_hub import constants

    from autolabel.core.errors import ModelError
    from autolabel.embedding.checkpoint import check_hub_reachable

    with socket.socket() as silent:  # listening, never accepting: connections succeed, nothing answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        with pytest.raises(ModelError) as info:
            check_hub_reachable("autolabel-tests/not-cached", timeout=0.3)
    assert str(info.value) == _hub_error(endpoint, "no answer within 0.3 s")


def test_a_connect_timeout_to_the_hub_is_the_same_clean_line(monkeypatch) -> None:
    import socket

    from huggingface_hub import constants

    from autolabel.core.errors import ModelError
    from autolabel.embedding.checkpoint import check_hub_reachable

    def timed_out(*args, **kwargs):
        raise TimeoutError("timed out")  # socket.timeout

    monkeypatch.setattr(socket, "create_connection", timed_out)  # no packet leaves this machine
    monkeypatch.setattr(constants, "ENDPOINT", "http://10.255.255.1")
    with pytest.raises(ModelError) as info:
        check_hub_reachable("autolabel-tests/not-cached", timeout=0.3)
    assert str(info.value) == _hub_error("http://10.255.255.1", "no answer within 0.3 s")


def test_int8_without_onnx_runtime_says_how_to_install_it(image_folder: Path, labels_yaml: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                                       str(tmp_path / "out.parquet"), "--precision", "int8"])
    assert result.exit_code == 2
    assert result.output == ("error: --precision int8 needs ONNX Runtime, which is not installed: "
                             "pip install 'autolabel[int8]'\n")
    assert not (tmp_path / "out.parquet").exists()


def test_int8_matches_fp32_labels_and_its_export_is_made_once(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from autolabel.embedding import int8

    fp32 = run(shapes, tmp_path / "fp32.parquet", "--precision", "fp32", "--no-cache")
    quant = run(shapes, tmp_path / "int8.parquet", "--precision", "int8")
    assert quant["model"]["precision"] == "int8" and quant["model"]["fingerprint"] == fp32["model"]["fingerprint"]
    parity = quant["model"]["int8"]
    assert parity["runtime"] == "onnxruntime" and min(parity["image_cosine_min"], parity["text_cosine_min"]) >= 0.99
    labels, statuses, confidence = agree(tmp_path / "fp32.parquet", tmp_path / "int8.parquet")
    assert labels == 1.0 and statuses >= 0.95 and confidence <= 0.02
    monkeypatch.setattr(int8, "export", lambda *a: pytest.fail("exported again"))
    again = run(shapes, tmp_path / "again.parquet", "--precision", "int8", "--full-decode")  # misses: loads, reuses
    assert again["encoded"] == 24 and again["model"]["int8"] == parity


def test_an_int8_export_below_the_parity_floor_is_refused(tiny_clip: Path, image_folder: Path, labels_yaml: Path,
                                                          tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    from autolabel.embedding import int8

    monkeypatch.setattr(int8, "PARITY_FLOOR", 1.01)  # no export reaches it
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                                       str(tmp_path / "out.parquet"), "--model", str(tiny_clip), "--precision",
                                       "int8"])
    assert result.exit_code == 2
    assert "the int8 export of" in result.output and "(< 1.01); use --precision fp32 or bf16" in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_int8_is_refused_on_ray_before_anything_runs() -> None:
    from autolabel.core.config import RunConfig
    from autolabel.core.errors import UsageError

    with pytest.raises(UsageError, match=r"^--precision int8 runs with the local engine \(ONNX Runtime\)"):
        RunConfig.from_options("photos/", "labels.yaml", "out.parquet", precision="int8", engine="ray")


@pytest.mark.parametrize("damage", ["image-int8.onnx", "parity.json"])
def test_a_damaged_int8_export_in_the_cache_is_made_again(tiny_clip: Path, image_folder: Path, labels_yaml: Path,
                                                          tmp_path: Path, damage: str) -> None:
    pytest.importorskip("onnxruntime")
    cache = tmp_path / "cache"

    def labelled(out: str, *extra: str) -> object:
        result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--model",
                                           str(tiny_clip), "--precision", "int8", "--cache-dir", str(cache), "--out",
                                           str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        return result

    labelled("first.parquet")
    (export,) = (cache / "onnx").iterdir()
    (export / damage).write_bytes(b"\x00garbage{")
    result = labelled("again.parquet", "--full-decode")  # embeddings the cache lacks: the model loads
    wanted = f"warning: the int8 export in {export} cannot be read ("
    assert [ln for ln in result.stderr.splitlines() if ln.startswith(wanted)], result.stderr
    assert [ln for ln in result.stderr.splitlines() if ln.endswith("); exporting it again")], result.stderr
    assert (export / damage).read_bytes() != b"\x00garbage{"
    assert sorted(p.name for p in (cache / "onnx").iterdir()) == [export.name]  # nothing left aside
