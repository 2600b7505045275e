"""A running Label Studio server: push a labels table as a project with predictions, pull the reviews back."""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import re
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from autolabel.core.errors import AutolabelError, RuntimeFailure, SourceError, UsageError
from autolabel.review.exporters import label_studio
from autolabel.review.exporters.base import ExportRow, export_rows, image_problem, model_version
from autolabel.table.results import Results, find_images_root
from autolabel.task import SINGLE, Task

if TYPE_CHECKING:
    from label_studio_sdk import LabelStudio

    from autolabel.core.progress import Reporter

INSTALL = "pip install 'autolabel[label-studio]'"
PROBE_TIMEOUT = 5.0  # seconds: a wrong --url or key fails this fast, before any work
TASK_BATCH = 500
MAX_PAGES = 100_000  # of a listing: a bound on a server that pages forever
UPLOAD_BATCH = 50  # Label Studio takes at most 100 files per request (DATA_UPLOAD_MAX_NUMBER_FILES)
UPLOAD_BYTES = 100 * 1024 * 1024  # and at most 250 MB (DATA_UPLOAD_MAX_MEMORY_SIZE)
UPLOADABLE = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")  # image types its uploader accepts
STORAGE_TITLE = "autolabel images"
ENV_ROOT = label_studio.DOCUMENT_ROOT_ENV


@dataclass(frozen=True)
class PushConfig:
    """Where to push and how the images become viewable in Label Studio."""

    url: str
    api_key: str | None
    project: str | None = None  # the project's title; default: "autolabel <table name>"
    status: str = "all"
    images_root: str | Path | None = None
    url_prefix: str | None = None  # images already served over HTTP(S)/S3 at PREFIX/path
    document_root: Path | None = None  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: the server reads the files itself


@dataclass(frozen=True)
class PushResult:
    """What a push did."""

    project_id: int
    project_title: str
    project_url: str
    created: bool  # a new project (else an existing one with the same title and labeling config)
    added: int  # tasks added now
    present: int  # tasks of this table the project already held
    images: str  # how the images are served, in words
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def connect(url: str | None, api_key: str | None, timeout: float = PROBE_TIMEOUT) -> LabelStudio:
    """An SDK client for the server at `url`, checked with one short request: a wrong address or key fails in
    seconds."""
    if not url:
        raise UsageError("no Label Studio server given: pass --url or set LABEL_STUDIO_URL")
    base = url.rstrip("/")
    if not re.match(r"https?://[^/]", base) or not _well_formed(base):
        raise UsageError(f"--url {url}: expected the server's address, e.g. http://localhost:8080")
    if not api_key:
        raise UsageError(f"no API key for Label Studio at {base}: pass --api-key or set LABEL_STUDIO_API_KEY "
                         "(Label Studio: Account & Settings → Personal Access Token, or the legacy Access Token)")
    try:
        import httpx
        from label_studio_sdk import LabelStudio
        from label_studio_sdk.core.api_error import ApiError
    except ImportError:
        raise UsageError(f"talking to a Label Studio server needs its SDK: {INSTALL}") from None
    try:
        client = LabelStudio(base_url=base, api_key=api_key)
        client.users.whoami(request_options={"timeout_in_seconds": timeout, "max_retries": 0})
    except ApiError as exc:
        if exc.status_code in (None, 401, 403):
            raise UsageError(f"Label Studio at {base} rejected the API key ({_detail(exc.body)}); "
                             "check --api-key / LABEL_STUDIO_API_KEY") from None
        raise UsageError(f"{base} does not answer as a Label Studio server (HTTP {exc.status_code}); "
                         "check --url / LABEL_STUDIO_URL") from None
    except httpx.TimeoutException:
        raise UsageError(f"cannot reach Label Studio at {base}: no answer within {timeout:g} s; "
                         "check --url / LABEL_STUDIO_URL") from None
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach Label Studio at {base} ({_detail(str(exc))}); is it running? "
                         "check --url / LABEL_STUDIO_URL") from None
    except (ValueError, TypeError, KeyError, AttributeError):  # an answer that is not Label Studio's JSON
        raise UsageError(f"{base} does not answer as a Label Studio server; check --url / LABEL_STUDIO_URL") from None
    return client


def _well_formed(url: str) -> bool:
    """A URL with a host and, if any, a valid port (`http://[::1` or `http://h:x` would fail later, deep in httpx)."""
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        return False


def push(results: Results, config: PushConfig, reporter: Reporter | None = None) -> PushResult:
    """Create (or reuse, by title) a project with this table's labeling config and add the tasks it does not hold yet,
    each with the model's prediction, in batches; make every image viewable."""
    mode = _mode(config)
    rows = export_rows(results, config.status, find_images_root(results, config.images_root))
    left_out: dict[str, str] = {}  # table path → why its image is not pushed
    for row in rows:
        if mode == "prefix" or not isinstance(row.source, Path):  # served elsewhere (an object-store URL as it is)
            continue
        if problem := image_problem(row.source):
            left_out[row.path] = problem
        elif mode == "upload" and row.source.suffix.lower() not in UPLOADABLE:
            left_out[row.path] = (f"Label Studio does not take {row.source.suffix or 'extension-less'} uploads (it "
                                  f"takes {' '.join(UPLOADABLE)}); serve it with --url-prefix or {ENV_ROOT}")
    rows = [r for r in rows if r.path not in left_out]
    skipped = [f"{path}: {why}" for path, why in left_out.items()]
    storages = [] if config.document_root is None or mode != "local" else \
        storage_folders([r.source for r in rows if isinstance(r.source, Path)], config.document_root)
    client = connect(config.url, config.api_key)
    base = config.url.rstrip("/")
    title = config.project or f"autolabel {results.path.stem}"
    config_xml = label_studio.config_xml(results.classes, results.task.multiple)
    project, created = _project(client, title, config_xml)
    try:
        added, problem = _add_tasks(client, project.id, rows, storages, results, config, reporter)
    except (AutolabelError, OSError) as exc:
        if not created:
            raise
        raise _created_before(exc, title, project.id) from None
    how = {"local": "Local Files storage " + ", ".join(map(str, storages)), "prefix": f"at {config.url_prefix}",
           "upload": "uploaded to Label Studio"}[mode]
    return PushResult(project_id=project.id, project_title=title, project_url=f"{base}/projects/{project.id}/data",
                      created=created, added=added, present=len(rows) - added, images=how,
                      skipped=tuple(skipped), warnings=(problem,) if problem else ())


def _add_tasks(client: LabelStudio, project_id: int, rows: list[ExportRow], storages: list[Path], results: Results,
               config: PushConfig, reporter: Reporter | None) -> tuple[int, str | None]:
    """Add the rows the project does not hold yet, in batches; (how many were added, why images will not show)."""
    present = {str((t.data or {}).get("path")) for t in _listed(
        "list the project's tasks", lambda: client.tasks.list(project=project_id, fields="task_only", page_size=1000))}
    new = [r for r in rows if r.path not in present]
    for folder in storages:
        _ensure_storage(client, project_id, folder)
    version = model_version(results)
    mode, sample, done = _mode(config), None, 0
    if reporter is not None:
        reporter.start(len(new), "pushing")
    started = time.perf_counter()
    try:
        for batch in _batches(new, mode):
            images = _images(client, project_id, batch, config, mode)
            tasks = [label_studio.task(row, image, version) for row, image in zip(batch, images, strict=True)]
            with _calling(f"import {len(tasks)} tasks"):
                client.projects.import_tasks(project_id, request=tasks)
            sample = sample or images[0]
            done += len(batch)
            if reporter is not None:
                reporter.advance(len(batch), done / max(time.perf_counter() - started, 1e-9))
    finally:
        if reporter is not None:
            reporter.stop()
    return len(new), (_unserved(client, sample) if sample else None)


def _created_before(exc: BaseException, title: str, project_id: int) -> AutolabelError:
    """A failure after this push created its project: the same error, saying which project now exists."""
    if isinstance(exc, AutolabelError):
        what = str(exc)
    else:
        name = getattr(exc, "filename", None)
        what = (f"{name}: " if name else "") + str(getattr(exc, "strerror", None) or exc)
    kind = type(exc) if isinstance(exc, AutolabelError) else RuntimeFailure
    return kind(f"{what}; this push had already created the Label Studio project '{title}' (id {project_id}): "
                "delete it there, or fix the problem and export again to add the tasks to it")


def pull_reviews(url: str | None, api_key: str | None, project: str, kind: Task = SINGLE) -> dict[str, Any]:
    """The reviews of a project (by id or title) → {table path: the human's choice (multi-label: every choice)},
    by the file import's rules."""
    client = connect(url, api_key)
    found = _find_project(client, project, by_id=True)
    if found is None:
        raise UsageError(f"Label Studio at {url}: no project with id or title '{project}'")
    return label_studio.reviews(_tasks(client, found.id), f"Label Studio project {found.id} at {url}", kind)


def project_tasks(url: str | None, api_key: str | None, project_id: int) -> list[dict[str, Any]]:
    """Every task of a project with its annotations (as `import-review --from-label-studio` reads them)."""
    return _tasks(connect(url, api_key), project_id)


def _tasks(client: LabelStudio, project_id: int) -> list[dict[str, Any]]:
    listed = _listed("list the project's tasks", lambda: client.tasks.list(project=project_id, fields="all",
                                                                           page_size=100))
    with _calling("read the project's tasks"):
        return [t.dict() for t in listed]


def storage_folders(sources: Sequence[Path], root: Path) -> list[Path]:
    """Folders to register as Local Files storages so that every image is served: the images' common folder, or,
    where that is the document root itself (which Label Studio refuses), each top-level subfolder's common folder."""
    groups: dict[str, list[str]] = {}
    for source in sources:
        try:
            rel = Path(os.path.abspath(source)).relative_to(root)
        except ValueError:
            raise UsageError(f"{source}: not under {ENV_ROOT}={root}, so Label Studio cannot serve it; set {ENV_ROOT} "
                             "(here and for the server) to a folder above all images, or pass --url-prefix") from None
        if len(rel.parts) < 2:
            raise UsageError(f"{source}: lies directly in {ENV_ROOT}={root}, and Label Studio serves local files only "
                             f"from its subfolders; set {ENV_ROOT} to {root.parent} (here and for the server)")
        groups.setdefault(rel.parts[0], []).append(rel.parent.as_posix())
    if not groups:
        return []
    common = os.path.commonpath([p for group in groups.values() for p in group])
    if common:
        return [root / common]
    return [root / os.path.commonpath(group) for _, group in sorted(groups.items())]


def _mode(config: PushConfig) -> str:
    if config.url_prefix:
        return "prefix"
    return "local" if config.document_root is not None else "upload"


def _batches(rows: list[ExportRow], mode: str) -> Iterator[list[ExportRow]]:
    if mode != "upload":
        for i in range(0, len(rows), TASK_BATCH):
            yield rows[i:i + TASK_BATCH]
        return
    batch: list[ExportRow] = []
    size = 0
    for row in rows:
        n = row.source.stat().st_size if isinstance(row.source, Path) else 0
        if batch and (len(batch) == UPLOAD_BATCH or size + n > UPLOAD_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += n
    if batch:
        yield batch


def _images(client: LabelStudio, project_id: int, batch: list[ExportRow], config: PushConfig, mode: str) -> list[str]:
    """Each row's image URL for its task; in upload mode this batch's local images are uploaded first."""
    local = [r for r in batch if isinstance(r.source, Path)] if mode == "upload" else []
    uploaded = dict(zip((r.path for r in local), _upload(client, project_id, local), strict=True)) if local else {}
    return [uploaded.get(r.path) or _reference(config, r) for r in batch]


def _reference(config: PushConfig, row: ExportRow) -> str:
    if config.url_prefix:
        return label_studio.prefixed_url(config.url_prefix, row.path)
    if isinstance(row.source, str) or config.document_root is None:
        return str(row.source)  # an object-store URL: the project's cloud storage resolves it
    return label_studio.local_files_url(row.source, config.document_root)


def _canonical(xml: str) -> str:
    try:
        return ET.canonicalize(xml, strip_text=True)
    except ET.ParseError:
        return xml


def _choices(xml: str) -> list[str]:
    try:
        return [c.get("value", "") for c in ET.fromstring(xml).iter("Choice")]
    except ET.ParseError:
        return []


def _project(client: LabelStudio, title: str, config_xml: str) -> tuple[Any, bool]:
    """The project with this title (its labeling config must be ours), else a new one."""
    found = _find_project(client, title, by_id=False)
    if found is None:
        with _calling(f"create the project '{title}'"):
            created = client.projects.create(title=title, label_config=config_xml,
                                             description="Predictions from autolabel")
        if not isinstance(getattr(created, "id", None), int):
            raise SourceError(f"Label Studio answered the request to create the project '{title}' without a "
                              "project id; look for the project in Label Studio (delete it if it is there) and "
                              "check that --url is a Label Studio server (1.x)")
        return created, True
    if _canonical(found.label_config or "") != _canonical(config_xml):
        theirs, ours = _choices(found.label_config or ""), _choices(config_xml)
        what = (f"its classes differ (only there: {', '.join(sorted(set(theirs) - set(ours))) or '-'}; only here: "
                f"{', '.join(sorted(set(ours) - set(theirs))) or '-'})" if set(theirs) != set(ours)
                else "it was edited in Label Studio")
        raise UsageError(f"Label Studio project '{title}' (id {found.id}) has another labeling config than this "
                         f"table's: {what}; push to a new project with --project NEW_TITLE")
    return found, False


def _find_project(client: LabelStudio, key: str, by_id: bool) -> Any | None:
    from label_studio_sdk.core.api_error import ApiError

    if by_id and key.isdigit():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydantic's serializer warnings on odd answers: checked below
                found = client.projects.get(int(key))
            if not isinstance(getattr(found, "id", None), int):
                raise SourceError(f"Label Studio answered the request to get project {key} with JSON autolabel cannot "
                                  "read (no project id); check that --url is a Label Studio server (1.x)")
            return found
        except ApiError as exc:
            if exc.status_code != 404:
                raise SourceError(f"Label Studio refused to get project {key}: {_detail(exc.body)}") from None
    matches = [p for p in _listed("list projects", lambda: client.projects.list(title=key)) if p.title == key]
    if len(matches) > 1:
        ids = ", ".join(str(p.id) for p in matches)
        raise UsageError(f"several Label Studio projects are titled '{key}' (ids {ids}); rename all but one"
                         + (" or give the id" if by_id else ""))
    return matches[0] if matches else None


def _listed(what: str, first_page: Callable[[], Any]) -> list[Any]:
    """Every item of a paged SDK listing, each an object with an integer id; pages end when one brings nothing new
    (a server answering every page alike would otherwise be asked forever) or after MAX_PAGES."""
    from label_studio_sdk.core.api_error import ApiError

    items: list[Any] = []
    seen: set[int] = set()
    with _calling(what):
        page, number = first_page(), 1
        while page is not None:
            if not isinstance(page.items, list) or not all(isinstance(getattr(i, "id", None), int)
                                                           for i in page.items):
                raise TypeError(f"page {number} is not a list of objects with ids")
            fresh = [i for i in page.items if i.id not in seen]
            seen.update(i.id for i in fresh)
            items.extend(fresh)
            if not fresh or not page.has_next or page.get_next is None or number >= MAX_PAGES:
                break
            try:
                page, number = page.get_next(), number + 1
            except ApiError as exc:
                if exc.status_code != 404:  # Label Studio answers the page after the last with 404 "Invalid page"
                    raise
                break
    return items


def _ensure_storage(client: LabelStudio, project_id: int, folder: Path) -> None:
    with _calling("list the project's Local Files storages"):
        storages = client.import_storage.local.list(project=project_id)
        if not isinstance(storages, list) or not all(isinstance(getattr(s, "id", None), int) for s in storages):
            raise TypeError("not a list of storages with ids")
        paths = {os.path.normpath(s.path or "") for s in storages}
    if os.path.normpath(folder) in paths:
        return
    with _calling(f"add a Local Files storage for {folder} (the server needs LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED"
                  f"=true and the same {ENV_ROOT})"):
        # Registered, never synced: the tasks are ours, the storage only lets the server serve the files.
        client.import_storage.local.create(project=project_id, path=str(folder), title=STORAGE_TITLE,
                                           use_blob_urls=False)


def _upload(client: LabelStudio, project_id: int, rows: list[ExportRow]) -> list[str]:
    """Upload the images (not as tasks) and return their URLs on the server, in order."""
    http = client._client_wrapper.httpx_client  # the SDK has no call for file uploads; this sends its auth headers
    with contextlib.ExitStack() as stack, _calling(f"take an upload of {len(rows)} images"):
        files = {f"file{i}": (row.name, stack.enter_context(row.source.open("rb")),
                              mimetypes.guess_type(row.name)[0] or "application/octet-stream")
                 for i, row in enumerate(rows)}
        sent = http.request(f"api/projects/{project_id}/import", method="POST",
                            params={"commit_to_project": "false"}, files=files)
        _check(sent)
        ids = sent.json()["file_upload_ids"]
        listed = http.request(f"api/projects/{project_id}/file-uploads", method="GET", params={"ids": json.dumps(ids)})
        _check(listed)
        where = {item["id"]: "/data/" + item["file"] for item in listed.json()}
    if len(ids) != len(rows) or any(i not in where for i in ids):
        raise SourceError(f"Label Studio stored {len(where)} of {len(rows)} uploaded images")
    return [where[i] for i in ids]


def _check(response: Any) -> None:
    from label_studio_sdk.core.api_error import ApiError

    if response.status_code >= 300:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        raise ApiError(status_code=response.status_code, body=body)


def _unserved(client: LabelStudio, image: str) -> str | None:
    """Why the server does not serve this task image (None when it does): a check on one image after the push."""
    import httpx

    parts = urlsplit(image)
    try:
        if parts.scheme in ("http", "https"):
            response = httpx.get(image, timeout=10, follow_redirects=True)
        elif parts.scheme:
            return None  # s3:// and the like are resolved by the server's cloud storage; nothing to fetch here
        else:
            response = client._client_wrapper.httpx_client.request(
                parts.path.lstrip("/"), method="GET", params=dict(parse_qsl(parts.query)),
                request_options={"timeout_in_seconds": 10, "max_retries": 0})
    except httpx.HTTPError as exc:
        return f"could not fetch {image} to check it ({_detail(str(exc))})"
    kind = response.headers.get("content-type", "")
    if response.status_code != 200 or not kind.startswith("image/"):
        hint = (f" (local files need the server started with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                f"{ENV_ROOT} a parent of the images)" if image.startswith(label_studio.LOCAL_FILES) else "")
        return f"Label Studio answers {response.status_code} {kind or ''} for {image}: images will not show{hint}"
    return None


@contextlib.contextmanager
def _calling(what: str) -> Iterator[None]:
    """SDK and HTTP errors while doing `what` → one line naming it."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydantic's serializer warnings on odd answers: the error below says it
            yield
    except ApiError as exc:
        if exc.status_code is not None and exc.status_code < 300:  # a 2xx whose body is not JSON: a web page
            raise SourceError(f"Label Studio answered the request to {what} with something that is not its JSON "
                              f"(HTTP {exc.status_code}: {_detail(exc.body)[:80]}); check that --url is the "
                              "Label Studio server itself, not a login page or proxy") from None
        raise SourceError(f"Label Studio refused to {what}: HTTP {exc.status_code}: {_detail(exc.body)}") from None
    except httpx.HTTPError as exc:
        raise SourceError(f"lost Label Studio while trying to {what} ({_detail(str(exc))})") from None
    except json.JSONDecodeError as exc:  # our own reads of an answer (uploads)
        raise SourceError(f"Label Studio answered the request to {what} with something that is not JSON ({exc}); "
                          "check that --url is the Label Studio server itself, not a login page or proxy") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSON of another shape (pydantic included)
        raise SourceError(f"Label Studio answered the request to {what} with JSON autolabel cannot read "
                          f"({type(exc).__name__}: {_detail(str(exc))[:120]}); check that --url is a Label Studio "
                          "server (1.x)") from None


def _detail(body: Any) -> str:
    """The gist of an error answer, on one line."""
    if isinstance(body, dict):
        errors = body.get("validation_errors")
        if isinstance(errors, dict) and errors:
            body = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in errors.items())
        else:
            body = body.get("detail") or body
    text = " ".join(re.sub(r"<[^>]+>", " ", str(body)).split())
    return text[:300] + ("…" if len(text) > 300 else "")
