"""`autolabel serve` with a running Label Studio: retrieval time for 160 tasks (cold and warm cache) and the
accuracy after 16 annotations made in review order, on the demo's part codes (tiny-shapes model).

    python benchmarks/serve_label_studio.py --url http://127.0.0.1:8080 --token TOKEN --document-root ROOT
        [--via server|disk] [--seed 11] [--annotations 16]

Label Studio must run with ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false, local files served
(LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true) from ROOT. The images are drawn under ROOT; `--via server` has the
backend read them through Label Studio (LABEL_STUDIO_URL/API_KEY), `--via disk` from ROOT. Warm: a second project
of the same images on a restarted backend (the cache on disk kept, nothing in memory). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "tiny-shapes"))

from make_images import make_images  # noqa: E402
from simulate_review import CODES  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--document-root", type=Path, required=True)
    parser.add_argument("--via", choices=["server", "disk"], default="server")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--annotations", type=int, default=16)
    args = parser.parse_args()
    ls = Client(args.url, args.token)
    folder = f"serve-bench-{args.seed}"
    manifest = make_images(args.document_root / folder, n=154, seed=args.seed, messy=True)
    truth = {row.split(",")[0]: CODES.get(row.split(",")[1]) for row in manifest.read_text().splitlines()[1:]}
    cache = tempfile.mkdtemp(prefix="serve-bench-cache-")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.update({"LABEL_STUDIO_URL": args.url, "LABEL_STUDIO_API_KEY": args.token} if args.via == "server" else
               {"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(args.document_root)})
    out: dict = {"tasks": len(truth), "via": args.via, "seed": args.seed}
    with Backend(env, cache) as url:
        cold = ls.project(f"cold {args.seed}", folder, sorted(truth), url, args.document_root)
        out["retrieve_cold_s"] = ls.retrieve(cold)
    with Backend(env, cache) as url:
        warm = ls.project(f"warm {args.seed}", folder, sorted(truth), url, args.document_root)
        out["retrieve_warm_s"] = ls.retrieve(warm)
        tasks = ls.tasks(warm)
        out["accuracy_before"] = accuracy(tasks, truth, set())
        done, skipped = ls.annotate_in_order(tasks, truth, args.annotations)
        out["retrieve_after_annotations_s"] = ls.retrieve(warm)
        after = ls.tasks(warm)
        out.update(annotated=len(done), skipped=skipped, accuracy_after=accuracy(after, truth, set(done)),
                   model_versions=sorted({latest(t)["model_version"] for t in after}))
    print(json.dumps(out))


def latest(task: dict) -> dict:
    return max(task["predictions"], key=lambda p: p["id"])


def accuracy(tasks: list[dict], truth: dict, done: set) -> float:
    """Of the tasks with a truth that were not annotated: the share whose latest prediction is right."""
    scored = [t for t in tasks if truth[t["data"]["path"]] and t["id"] not in done]
    right = sum(bool(latest(t)["result"]) and latest(t)["result"][0]["value"]["choices"][0] == truth[t["data"]["path"]]
                for t in scored)
    return round(right / len(scored), 4)


class Client:
    """The few Label Studio API calls a person's session makes."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=600)

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response

    def project(self, title: str, folder: str, paths: list[str], backend: str, root: Path) -> int:
        config = ('<View><Image name="image" value="$image"/><Choices name="code" toName="image" choice="single">'
                  + "".join(f'<Choice value="{c}"/>' for c in sorted(CODES.values())) + "</Choices></View>")
        project = self.call("POST", "/api/projects", json={"title": title, "label_config": config}).json()["id"]
        self.call("POST", "/api/storages/localfiles", json={"project": project, "path": str(root / folder),
                                                            "use_blob_urls": False, "title": folder})
        self.call("POST", f"/api/projects/{project}/import",
                  json=[{"image": f"/data/local-files/?d={folder}/{p}", "path": p} for p in paths])
        self.call("POST", "/api/ml", json={"url": backend, "project": project, "title": "autolabel"})
        return project

    def retrieve(self, project: int) -> float:
        started = time.perf_counter()
        self.call("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
                  json={"selectedItems": {"all": True, "excluded": []}})
        return round(time.perf_counter() - started, 2)

    def tasks(self, project: int) -> list[dict]:
        return self.call("GET", "/api/tasks", params={"project": project, "fields": "all", "page_size": 1000}
                         ).json()["tasks"]

    def annotate_in_order(self, tasks: list[dict], truth: dict, budget: int) -> tuple[list[int], int]:
        """Ascending prediction score; junk (no truth) is skipped as a person skips it in the labeling stream."""
        done, skipped = [], 0
        for task in sorted(tasks, key=lambda t: (latest(t)["score"], t["id"])):
            code = truth[task["data"]["path"]]
            result = [{"from_name": "code", "to_name": "image", "type": "choices", "value": {"choices": [code]}}]
            self.call("POST", f"/api/tasks/{task['id']}/annotations",
                      json={"result": result} if code else {"result": [], "was_cancelled": True})
            if not code:
                skipped += 1
                continue
            done.append(task["id"])
            if len(done) == budget:
                break
        return done, skipped


class Backend:
    """`autolabel serve codes.yaml` on a free port, for the length of a `with`."""

    def __init__(self, env: dict, cache: str) -> None:
        self.env, self.cache = env, cache

    def __enter__(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.process = subprocess.Popen([sys.executable, "-m", "autolabel", "serve",
                                         str(ROOT / "examples" / "tiny-shapes" / "codes.yaml"), "--port", str(port),
                                         "--cache-dir", self.cache], env=self.env, stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        for _ in range(240):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                time.sleep(0.5)
        raise SystemExit("the backend did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    main()
