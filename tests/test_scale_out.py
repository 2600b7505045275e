"""`--engine ray` and object stores: same table as the local engine, on a local Ray cluster and a local S3."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from autolabel.cli import main

from .conftest import noise_image

pytestmark = pytest.mark.ray
BUCKET = "autolabel-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server on 127.0.0.1 holding 14 images (two broken) and manifests; env points at it."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import boto3

    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    local = tmp_path_factory.mktemp("s3-mirror")
    rels = []
    for i in range(14):
        rel = f"imgs/{'ab'[i % 2]}/{i:02d}.png"
        buf = io.BytesIO()
        noise_image(300 + i, (40 + i, 36)).save(buf, "PNG")
        data = b"" if i == 5 else buf.getvalue()[:60] if i == 9 else buf.getvalue()
        client.put_object(Bucket=BUCKET, Key=rel, Body=data)
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
        rels.append(rel)
    manifest = pd.DataFrame({"path": rels, "truth": [f"t{i}" for i in range(14)]})
    buf = io.BytesIO()
    manifest.to_parquet(buf, index=False)
    client.put_object(Bucket=BUCKET, Key="manifest.parquet", Body=buf.getvalue())
    manifest.to_parquet(local / "manifest.parquet", index=False)
    yield {"client": client, "local": local, "env": env}
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def ray_cluster(s3):
    """One small Ray cluster for these tests (started after the S3 env, so workers inherit it)."""
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=4, object_store_memory=100 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
             configure_logging=False, runtime_env={"env_vars": dict(s3["env"])})
    yield ray
    ray.shutdown()


def label(source: str, out: str, labels: Path, model: Path, *extra: str) -> dict:
    summary = Path(os.environ["AUTOLABEL_CACHE_DIR"]) / f"summary-{abs(hash((source, out, extra)))}.json"
    result = CliRunner().invoke(main, ["run", source, "--labels", str(labels), "--out", out, "--model", str(model),
                                       "--summary-json", str(summary), "-q", "--no-cache", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(summary.read_text())


def read_s3(client, key: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    for column in ("path", "label", "status", "error", "truth"):
        assert a[column].tolist() == b[column].tolist(), column
    assert [list(x) for x in a.top_labels] == [list(x) for x in b.top_labels]
    np.testing.assert_allclose(a.confidence.fillna(-1), b.confidence.fillna(-1), atol=1e-5)
    np.testing.assert_allclose(np.concatenate([np.asarray(x, float) for x in a.top_scores]),
                               np.concatenate([np.asarray(x, float) for x in b.top_scores]), atol=1e-5)


def test_s3_manifest_and_out_local_engine_equals_local_files(s3, tmp_path, labels_yaml, tiny_clip) -> None:
    local = tmp_path / "local.parquet"
    label(str(s3["local"] / "manifest.parquet"), str(local), labels_yaml, tiny_clip)
    label(f"s3://{BUCKET}/manifest.parquet", f"s3://{BUCKET}/out/local-engine.parquet", labels_yaml, tiny_clip)
    remote = read_s3(s3["client"], "out/local-engine.parquet")
    assert_same(pd.read_parquet(local), remote)
    assert (remote.status == "error").sum() == 2
    folder = label(f"s3://{BUCKET}/imgs", str(tmp_path / "folder.csv"), labels_yaml, tiny_clip)
    assert folder["images"] == 14
    assert pd.read_csv(tmp_path / "folder.csv").path.tolist() == sorted(
        p.split("/", 1)[1] for p in pd.read_parquet(local).path)


def test_mixed_local_and_remote_paths_in_one_manifest(s3, tmp_path, labels_yaml, tiny_clip) -> None:
    noise_image(1, (40, 40)).save(tmp_path / "here.png")
    manifest = tmp_path / "mixed.csv"
    pd.DataFrame({"path": ["here.png", f"s3://{BUCKET}/imgs/a/00.png"]}).to_csv(manifest, index=False)
    summary = label(str(manifest), str(tmp_path / "o.parquet"), labels_yaml, tiny_clip)
    assert summary["status"]["error"] == 0 and summary["images"] == 2


def test_bad_credentials_exit_2_with_a_clear_message(s3, tmp_path, labels_yaml, tiny_clip, monkeypatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = CliRunner().invoke(main, ["run", f"s3://{BUCKET}/manifest.parquet", "--labels", str(labels_yaml),
                                       "--out", str(tmp_path / "o.parquet"), "--model", str(tiny_clip), "-q"])
    assert result.exit_code == 2
    assert "access denied" in result.output and "AWS_ACCESS_KEY_ID" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_ray_engine_equals_local_engine_from_s3_to_s3(ray_cluster, s3, tmp_path, labels_yaml, tiny_clip) -> None:
    local = tmp_path / "local.parquet"
    label(str(s3["local"] / "manifest.parquet"), str(local), labels_yaml, tiny_clip)
    summary = label(f"s3://{BUCKET}/manifest.parquet", f"s3://{BUCKET}/out/ray.parquet", labels_yaml, tiny_clip,
                    "--engine", "ray", "--actors", "2", "--batch-size", "2")
    assert summary["ray"]["actors_used"] == 2
    remote = read_s3(s3["client"], "out/ray.parquet")
    assert_same(pd.read_parquet(local), remote)
    errors = remote.loc[remote.status == "error", "error"].tolist()
    assert errors[0] == "empty file (0 bytes)" and errors[1].startswith("truncated or corrupt image data (")


def test_ray_engine_local_folder_with_siglip(ray_cluster, tmp_path, image_folder, labels_yaml, tiny_siglip) -> None:
    (image_folder / "broken.jpg").write_bytes(b"not an image")
    label(str(image_folder), str(tmp_path / "l.parquet"), labels_yaml, tiny_siglip)
    label(str(image_folder), str(tmp_path / "r.parquet"), labels_yaml, tiny_siglip, "--engine", "ray")
    assert_same_no_truth = pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(tmp_path / "r.parquet")
    a, b = assert_same_no_truth
    assert a.path.tolist() == b.path.tolist() and a.label.tolist() == b.label.tolist()
    assert a.error.tolist() == b.error.tolist()
    np.testing.assert_allclose(a.confidence.fillna(-1), b.confidence.fillna(-1), atol=1e-5)


def test_engine_ray_without_ray_installed_exits_2(tmp_path, image_folder, labels_yaml, tiny_clip,
                                                 monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                                       str(tmp_path / "o.parquet"), "--model", str(tiny_clip), "--engine", "ray"])
    assert result.exit_code == 2 and "pip install 'autolabel[ray]'" in result.output


def test_unreachable_cluster_exits_2_quickly(tmp_path, image_folder, labels_yaml, tiny_clip) -> None:
    pytest.importorskip("ray")
    port = _free_port()  # nothing listens there
    started = time.monotonic()
    result = CliRunner().invoke(main, ["run", str(image_folder), "--labels", str(labels_yaml), "--out",
                                       str(tmp_path / "o.parquet"), "--model", str(tiny_clip), "--engine", "ray",
                                       "--ray-address", f"127.0.0.1:{port}"])
    assert time.monotonic() - started < 60  # Ray itself waits over 3 minutes; our probe gives up after 5 s
    assert result.exit_code == 2
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.output


PEAK_RSS = ("import sys\nfrom autolabel.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n")


def test_ray_driver_memory_does_not_grow_with_the_records(ray_cluster, tmp_path, labels_yaml, tiny_clip) -> None:
    """2,000 vs 20,000 records (missing files: every row an error row made by the actors), shards written by the
    workers: the driver's peak RSS grows by at most 100 MB (it held every record before: ~1.2 KB each)."""
    address = ray_cluster.get_runtime_context().gcs_address
    peaks = {}
    for n in (2000, 20000):
        manifest = tmp_path / f"m{n}.parquet"
        pd.DataFrame({"path": [f"missing/{i:06d}.png" for i in range(n)]}).to_parquet(manifest, index=False)
        proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "run", str(manifest), "--labels", str(labels_yaml),
                               "--model", str(tiny_clip), "--out", f"{tmp_path}/out{n}/", "--engine", "ray",
                               "--ray-address", address, "--shard-size", "5000", "--no-cache", "-q"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        peaks[n] = int(proc.stdout.split()[-1]) / 1024
        assert len(pd.read_parquet(tmp_path / f"out{n}")) == n
    assert peaks[20000] - peaks[2000] <= 100, peaks


def test_ray_engine_learns_from_examples_like_the_local_engine(ray_cluster, tmp_path, image_folder, labels_yaml,
                                                               tiny_clip) -> None:
    table = tmp_path / "reviewed.csv"
    pd.DataFrame({"path": [str(image_folder / p) for p in ("a/1.jpg", "b/2.png", "c.png")],
                  "reviewed_label": ["bird", "cat", "dog"]}).to_csv(table, index=False)
    local = label(str(image_folder), str(tmp_path / "l.parquet"), labels_yaml, tiny_clip, "--examples", str(table))
    remote = label(str(image_folder), str(tmp_path / "r.parquet"), labels_yaml, tiny_clip, "--examples", str(table),
                   "--engine", "ray")
    assert local["learned"] == remote["learned"]
    a, b = pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(tmp_path / "r.parquet")
    assert a.label.tolist() == b.label.tolist() and a.status.tolist() == b.status.tolist()
    assert sorted(b.loc[b.status == "reviewed", "path"]) == ["a/1.jpg", "b/2.png", "c.png"]
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
