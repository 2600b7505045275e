"""Where a checkpoint's files are and what identifies them, found without torch: a folder or a Hub cache snapshot."""

from __future__ import annotations

import hashlib
import http.client
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autolabel.core.errors import ModelError

DEFAULT_MODEL = "openai/clip-vit-base-patch32"
HUB_TIMEOUT_S = 2.0
HINT = (
    "pass --model PATH to a local checkpoint folder, connect to the network so it can be downloaded "
    "from the Hugging Face Hub, or set HF_HUB_OFFLINE=1 to use a copy already in the HF cache"
)


@dataclass(frozen=True)
class Checkpoint:
    """A model name resolved on this machine: its folder (None: not here, must be downloaded) and fingerprint."""

    name: str
    folder: Path | None
    fingerprint: str | None  # local folder: a hash of its files; Hub snapshot: the commit
    from_hub: bool = False


def local_fingerprint(folder: Path) -> str:
    """Hash of the config and weights (size, and full content for small files, ends for big ones)."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        digest.update(path.name.encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        with open(path, "rb") as f:
            if size <= 64 << 20:
                digest.update(f.read())
            else:
                digest.update(f.read(8 << 20))
                f.seek(-(8 << 20), os.SEEK_END)
                digest.update(f.read())
    return digest.hexdigest()[:16]


def looks_like_path(name: str) -> bool:
    """A name that can only be a folder (./x, /x, ~/x, a/b/c), never a Hub id (owner/name)."""
    return name.startswith((".", "/", "~")) or (os.sep in name and name.count("/") > 1)


def locate(name: str) -> Checkpoint:
    """A local folder, else the Hub id's snapshot in the local HF cache (no network), else not here."""
    local = Path(name).expanduser()
    if local.is_dir():
        return Checkpoint(name, local, local_fingerprint(local))
    if looks_like_path(name):
        raise ModelError(f"model '{name}': no such folder; pass --model PATH to a checkpoint folder")
    snapshot = cached_snapshot(name)
    return Checkpoint(name, snapshot, snapshot.name if snapshot else None, from_hub=True)


def cached_snapshot(name: str) -> Path | None:
    """The folder of the Hub id's `main` snapshot in the local HF cache, if it holds the model's config."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found: Any = try_to_load_from_cache(name, "config.json")
    except (ValueError, OSError):  # not a valid repo id
        return None
    if not isinstance(found, str):
        return None
    folder = Path(found).parent
    has_weights = any(folder.glob("*.safetensors"))
    return folder if has_weights and (folder / "preprocessor_config.json").is_file() else None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE set: the Hub is never contacted."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_hub_reachable(name: str, timeout: float = HUB_TIMEOUT_S) -> None:
    """Before a download: one short HTTP request to the Hub, so an offline machine fails at once, not after
    minutes of retries. Any HTTP answer will do; a connection alone will not (a proxy or firewall that accepts
    every connection and never answers left transformers retrying for minutes)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    endpoint = str(getattr(constants, "ENDPOINT", None) or "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(f"{endpoint.rstrip('/')}/api/models/{name}", method="HEAD"),
                               timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # the Hub answered (even a 401 or 404 is an answer): the download says what is wrong
    except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError is an OSError
        cause = getattr(exc, "reason", exc)
        reason = getattr(cause, "strerror", None) or (str(cause) if isinstance(cause, str) else type(cause).__name__)
        if isinstance(cause, TimeoutError):  # socket.timeout too
            reason = f"no answer within {timeout:g} s"
        raise ModelError(f"model '{name}': not in the Hugging Face cache, and the Hub ({endpoint}) cannot be "
                         f"reached ({reason}); pass --model PATH to a local checkpoint folder, or download it "
                         "once with network access") from None


def preprocessor_config(source: str) -> dict[str, Any]:
    """The checkpoint's preprocessor_config.json (local folder or hub, via the HF cache)."""
    local = Path(source) / "preprocessor_config.json"
    if local.is_file():
        path = local
    elif Path(source).is_dir():
        raise ModelError(f"{source}: no preprocessor_config.json; the checkpoint must include its image settings")
    else:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(source, "preprocessor_config.json"))
    from autolabel.core.fileio import read_json_object

    try:
        return read_json_object(path, "the preprocessor config")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the preprocessor config ({exc.strerror or exc})") from None


def model_metadata(model: Any) -> dict[str, Any]:
    """Run-metadata view of a model (loaded or lazy): what the table records of it."""
    return {
        "id": model.name,
        "type": model.model_type,
        "fingerprint": model.fingerprint,
        "device": str(model.device),
        "precision": model.precision,
        "logit_scale": model.logit_scale,
        "logit_bias": model.logit_bias,
        "preprocessing": model.preprocessing.describe(),
    }
