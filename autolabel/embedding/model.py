"""ZeroShotModel: load a CLIP / SigLIP / SigLIP 2 checkpoint (safetensors only) and encode text and images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Idle OpenMP threads sleep instead of spinning: spinning threads starve our decode threads and any other run
# sharing the cores (two concurrent runs were 5x slower). Only effective before torch is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from autolabel.core import precision as precisions
from autolabel.core.errors import ModelError, UsageError
from autolabel.embedding.checkpoint import (
    DEFAULT_MODEL,
    Checkpoint,
    check_hub_reachable,
    hub_offline,
    locate,
    model_metadata,
)
from autolabel.embedding.checkpoint import HINT as _HINT
from autolabel.embedding.checkpoint import preprocessor_config as _preprocessor_config
from autolabel.embedding.decode import ModelInputs, Preprocessing

__all__ = ["DEFAULT_MODEL", "ZeroShotModel", "pick_device", "pick_dtype"]
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(device: str) -> torch.device:
    """`auto` → cuda, then mps, then cpu; anything else is checked to exist."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device: unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available here; use --device cpu or auto")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: MPS is not available here; use --device cpu or auto")
    return chosen


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """`auto` → fp16 on CUDA, bf16 on a CPU with native bf16, fp32 elsewhere (see precision.resolve)."""
    chosen = precisions.resolve(precision, device.type)
    if chosen not in PRECISIONS:
        raise UsageError(f"--precision {chosen}: runs on ONNX Runtime, not torch; use auto, fp32, fp16 or bf16 here")
    return PRECISIONS[chosen]


def _features(output: Any) -> torch.Tensor:
    """transformers 4.x returns the projected embedding; 5.x an output object holding it as pooler_output."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def _normalise(x: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _hub_fingerprint(name: str, config: Any) -> str:
    """The commit of the cached snapshot a hub id resolved to (so an updated model never hits stale caches)."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return str(commit)
    from huggingface_hub import hf_hub_download

    snapshot = Path(hf_hub_download(name, "config.json")).parent
    return snapshot.name if snapshot.parent.name == "snapshots" else name


def _load_error(name: str, exc: BaseException) -> ModelError:
    text = " ".join(str(exc).split())
    if len(text) > 240:
        text = text[:240] + "…"
    if ".bin" in text or "pytorch_model" in text or "safetensors" in text.lower():
        return ModelError(
            f"model '{name}': no safetensors weights; autolabel never loads pickled (.bin) weights, "
            "convert the checkpoint to safetensors or pick a checkpoint that ships model.safetensors"
        )
    return ModelError(f"cannot load model '{name}' ({text}); {_hint(name)}")


def _hint(name: str) -> str:
    """What to do, for where the model was looked for."""
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        return "check the path: --model takes a local checkpoint folder (config.json, model.safetensors) or a Hub id"
    if hub_offline():
        return ("it is not in the Hugging Face cache and HF_HUB_OFFLINE is set: pass --model PATH to a local "
                "checkpoint folder, or download it once with network access")
    return _HINT


@dataclass
class ZeroShotModel:
    """A dual image-text encoder ready for zero-shot classification on one device."""

    model: Any
    tokenizer: Any
    preprocessing: Preprocessing
    name: str
    model_type: str
    fingerprint: str
    device: torch.device
    dtype: torch.dtype
    context_length: int

    @classmethod
    def load(cls, name: str, device: str = "auto", precision: str = "auto",
             checkpoint: Checkpoint | None = None) -> ZeroShotModel:
        """Load from a local folder, else the Hub id's copy in the HF cache, else the Hub (only when it answers
        at once: an offline machine gets a clear error, not minutes of retries); safetensors only, never
        remote code."""
        import transformers
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        torch_device = pick_device(device)
        dtype = pick_dtype(precision, torch_device)
        checkpoint = checkpoint or locate(name)
        if checkpoint.folder is None and not hub_offline():
            check_hub_reachable(name)
        source = str(checkpoint.folder) if checkpoint.folder is not None else name
        try:
            config = AutoConfig.from_pretrained(source, trust_remote_code=False)
            model = AutoModel.from_pretrained(
                source, trust_remote_code=False, use_safetensors=True, dtype=dtype
            )
            tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
            preprocessing = Preprocessing.from_config(_preprocessor_config(source), f"{name}: preprocessor config")
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise _load_error(name, exc) from None
        if not all(hasattr(model, attr) for attr in ("get_text_features", "get_image_features", "logit_scale")):
            raise ModelError(
                f"model '{name}' ({config.model_type}) is not a dual image-text encoder; "
                "use a CLIP, SigLIP or SigLIP 2 checkpoint"
            )
        model.eval().to(torch_device)
        fingerprint = checkpoint.fingerprint or _hub_fingerprint(name, config)
        text_config = getattr(config, "text_config", config)
        return cls(
            model=model,
            tokenizer=tokenizer,
            preprocessing=preprocessing,
            name=name,
            model_type=str(config.model_type),
            fingerprint=fingerprint,
            device=torch_device,
            dtype=dtype,
            context_length=int(getattr(text_config, "max_position_embeddings", 77)),
        )

    @property
    def precision(self) -> str:
        """The weights' dtype as a word, e.g. "float32"."""
        return str(self.dtype).replace("torch.", "")

    @property
    def pads_to_max_length(self) -> bool:
        """SigLIP models were trained on text padded to the full context."""
        return self.model_type.startswith("siglip")

    @property
    def logit_scale(self) -> float:
        """exp(logit_scale): the temperature applied to cosine similarities."""
        return float(self.model.logit_scale.detach().float().exp().item())

    @property
    def logit_bias(self) -> float:
        """The model's logit bias (SigLIP), else 0."""
        bias = getattr(self.model, "logit_bias", None)
        return 0.0 if bias is None else float(bias.detach().float().item())

    def vocabulary(self) -> list[str]:
        """The tokenizer's tokens in id order (frequent first for BPE): where negative concepts come from."""
        return [token for token, _ in sorted(self.tokenizer.get_vocab().items(), key=lambda kv: kv[1])]

    def token_counts(self, prompts: Sequence[str]) -> list[int]:
        """How many tokens each prompt takes, untruncated."""
        return [len(ids) for ids in self.tokenizer(list(prompts), truncation=False)["input_ids"]]

    def too_long(self, prompts: Sequence[str]) -> list[str]:
        """Prompts whose tokens exceed the model's text context (they will be truncated)."""
        return [p for p, n in zip(prompts, self.token_counts(prompts), strict=True) if n > self.context_length]

    @torch.inference_mode()
    def encode_text(self, prompts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised float32 embeddings of the prompts (CPU tensor), encoded in batches."""
        chunks = []
        for start in range(0, len(prompts), batch_size):
            tokens = self.tokenizer(
                list(prompts[start : start + batch_size]),
                padding="max_length" if self.pads_to_max_length else True,
                truncation=True,
                max_length=self.context_length,
                return_tensors="pt",
            )
            keep = ("input_ids", "attention_mask")  # whatever the checkpoint's tokenizer emits of these
            inputs = {k: v.to(self.device) for k, v in tokens.items() if k in keep}
            chunks.append(_normalise(_features(self.model.get_text_features(**inputs))).cpu())
        return torch.cat(chunks)

    @torch.inference_mode()
    def encode_images(self, batch: ModelInputs) -> torch.Tensor:
        """L2-normalised float32 embeddings (CPU tensor) of a stacked batch of decoded images."""
        inputs = {}
        for key, array in batch.items():
            tensor = torch.from_numpy(np.ascontiguousarray(array))
            if self.device.type == "cuda":
                tensor = tensor.pin_memory()
            if tensor.is_floating_point():
                tensor = tensor.to(self.device, dtype=self.dtype, non_blocking=True)
            else:
                tensor = tensor.to(self.device, non_blocking=True)
            inputs[key] = tensor
        return _normalise(_features(self.model.get_image_features(**inputs))).cpu()

    def describe(self) -> dict[str, Any]:
        """Run-metadata view of the model."""
        return model_metadata(self)
