"""Text embedding backends: the sentence-transformers model run by torch, ONNX Runtime or OpenVINO.

``torch`` runs ``SentenceTransformer.encode`` (``curate.embed.text``). The others run the
model's transformer exported once to ONNX from the local model directory (never the hub) and
apply the sentence-transformers pipeline after it in numpy, as the model's ``modules.json``
says: the model's own tokenizer truncating at ``max_seq_length``, then pooling (mean over the
attention mask, CLS or max) and, where the model has a ``Normalize`` module, L2 normalisation.

- ``onnx``: the float32 export on ONNX Runtime (same vectors as torch up to float rounding).
- ``onnx-int8``: that export with its attention, LayerNorm, GELU and embedding subgraphs fused
  by ONNX Runtime's transformer optimizer (``onnxruntime.transformers.optimizer``, BERT rules),
  then its matrix products quantised to int8 (dynamic, per output channel:
  ``onnxruntime.quantization.quantize_dynamic``; the fused attention stays float32, which keeps
  the vectors closer to torch). Faster, vectors move: mean cosine to torch about 0.994 on BBC
  News paragraphs (``benchmarks/bench_embed.py``).
- ``openvino``: the float32 export compiled by OpenVINO for the CPU.
- ``auto`` (the default): ``onnx`` on the CPU when onnxruntime and onnx are importable, else
  ``torch`` (a GPU, or neither package). ``onnx`` is the fastest backend that keeps the issue's
  bounds (cosine to torch 1.0000, el2n AUROC equal, GIO picks the same: README, "Embedding");
  ``onnx-int8`` is faster still but moves the vectors. ``auto`` is resolved before any work and
  never recorded: provenance names the backend that ran. Files from torch, onnx and openvino
  mix in later steps; onnx-int8 files only with their own kind (``curate.io.compat``).

The exported backends run each batch as forward passes of at most ``FORWARD_TOKENS`` padded
tokens (rows sorted by length, trailing padding trimmed per pass): on a CPU the activations of
a 64-row batch of 100-token texts (40 MB in the feed-forward layers) do not fit in cache, and
passes of about 1,000 tokens ran 1.5 to 2 times faster than 64-row ones, torch included.

Exports are cached under ``--backend-cache`` (default ``$CURATE_CACHE_DIR``, else
``$XDG_CACHE_HOME/curate``, else ``~/.cache/curate``, as for the image export), one directory
per (model weights hash, format, recipe, library versions), built aside and renamed into place. Each entry records its file's sha256; an entry whose file no
longer matches (a crash, a disk error, a hand edit) is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from curate import progress
from curate.errors import InputError
from curate.io.provenance import file_sha256

BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino")
DEFAULT_BACKEND = "auto"
# Bump when the export or quantisation recipe changes: old cache entries then stop matching.
RECIPE = 2
ONNX_OPSET = 17
_FORMAT = {"onnx": "onnx-fp32", "onnx-int8": "onnx-int8", "openvino": "onnx-fp32"}
QUANTIZATION = {"torch": "none", "onnx": "none", "openvino": "none",
                "onnx-int8": "dynamic int8 (onnxruntime transformer fusion, then quantize_dynamic: "
                             "MatMul weights per channel, attention float32)"}
# Padded tokens per forward pass of the exported backends (rows x longest row): see the docstring.
FORWARD_TOKENS = 1024
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise InputError(f"--backend {name}: expected one of {', '.join(BACKENDS)}")
    return name


_NEEDS = {"onnx": ("onnxruntime", "onnx"), "onnx-int8": ("onnxruntime", "onnx"), "openvino": ("openvino", "onnx")}


def resolve_backend(backend: str, device: str) -> str:
    """The backend that runs: ``backend`` itself, or for ``auto`` ``onnx`` on the CPU when its
    runtime is installed and ``torch`` otherwise (``device``: a resolved torch device string)."""
    if check_backend(backend) != "auto":
        return backend
    return "onnx" if device == "cpu" and _installed("onnx") else "torch"


def _installed(backend: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in _NEEDS.get(backend, ()))


def require(backend: str) -> None:
    """InputError naming the extra to install when ``backend``'s runtime is not installed."""
    import importlib.util

    missing = [m for m in _NEEDS.get(backend, ()) if importlib.util.find_spec(m) is None]
    if missing:
        extra = "openvino" if backend == "openvino" else "onnx"
        raise InputError(f"--backend {backend} needs {' and '.join(missing)}: pip install 'curate[{extra}]', "
                         "or use --backend torch")


def default_cache_dir() -> Path:
    """``$CURATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/curate``, else ``~/.cache/curate``."""
    if os.environ.get("CURATE_CACHE_DIR"):
        return Path(os.environ["CURATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curate"


def _versions(fmt: str) -> dict[str, str]:
    import torch
    import transformers

    v = {"torch": torch.__version__, "transformers": transformers.__version__}
    if fmt == "onnx-int8":
        import onnxruntime

        v["onnxruntime"] = onnxruntime.__version__
    return v


def entry_key(weights_sha256: str, fmt: str) -> str:
    """Cache key of an export: weights hash, format, recipe and the versions that produce the file."""
    blob = json.dumps({"weights": weights_sha256, "format": fmt, "recipe": RECIPE, "opset": ONNX_OPSET,
                       "versions": _versions(fmt)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _cache_root(cache_dir: str | Path | None) -> Path:
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if root.exists() and not root.is_dir():
        raise InputError(f"--backend-cache {root}: is a file, not a directory; pass a directory for exported models")
    return root


def _valid(entry: Path) -> dict[str, Any] | None:
    """The entry's record if its model file matches the recorded sha256, else None."""
    try:
        record = json.loads((entry / "entry.json").read_text())
        if file_sha256(entry / "model.onnx") == record["sha256"]:
            return record
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def exported_model(model_dir: Path, weights_sha256: str, backend: str, cache_dir: str | Path | None,
                   name: str | None = None) -> tuple[Path, dict]:
    """(path of ``model.onnx``, its entry record) for ``backend``, exporting into the cache if needed.

    ``name``: the model as the user knows it, for the one line said on a terminal while exporting.

    Raises InputError when the cache directory cannot be created or written.
    """
    fmt = _FORMAT[backend]
    root = _cache_root(cache_dir)
    entry = root / "text" / f"{fmt}-{entry_key(weights_sha256, fmt)}"
    if entry.exists():
        record = _valid(entry)
        if record is not None:
            return entry / "model.onnx", record
        progress.warn(f"{entry}: cached export is damaged (hash mismatch); rebuilding it")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    except OSError as e:
        raise InputError(f"--backend-cache {root}: cannot write there ({e.strerror or e}); "
                         "pass a writable directory") from None
    try:
        record = _build(model_dir, weights_sha256, fmt, tmp, entry, name or model_dir.name)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a shared cache is readable like any other
        if entry.exists():
            shutil.rmtree(entry, ignore_errors=True)  # the damaged entry found above
        try:
            os.rename(tmp, entry)
        except OSError:
            # Another worker renamed its own build in first: use it if it is sound.
            if _valid(entry) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry / "model.onnx", record


def _build(model_dir: Path, weights_sha256: str, fmt: str, out: Path, entry: Path, name: str) -> dict[str, Any]:
    from curate.embed.text import TextEncoder

    if progress.interactive():
        # One line whatever the terminal's width (soft_wrap), the path verbatim (no rich markup).
        progress.stderr.print(f"exporting {name} to ONNX ({fmt}) once, cached in {entry} "
                              "(--backend-cache); later runs reuse it", soft_wrap=True, markup=False, highlight=False)
    st = TextEncoder(str(model_dir)).model
    _check_pipeline(st, model_dir)
    fp32 = out / ("model.onnx" if fmt == "onnx-fp32" else "fp32.onnx")
    _export_onnx(st, fp32)
    fused: dict[str, int] = {}
    if fmt == "onnx-int8":
        fused = _fuse_and_quantize(st, fp32, out)
    transformer = st[0]
    record = {
        "format": fmt, "recipe": RECIPE, "opset": ONNX_OPSET, "versions": _versions(fmt),
        "weights_sha256": weights_sha256, "sha256": file_sha256(out / "model.onnx"),
        "inputs": [k for k in _INPUTS if k in _tokenizer_keys(st.tokenizer)],
        "max_seq_length": int(st.max_seq_length), "do_lower_case": bool(getattr(transformer, "do_lower_case", False)),
        "fused": fused, "pooling": _pooling(st), "model_normalizes": any(type(m).__name__ == "Normalize" for m in st),
        "dimension": int(st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension")
                         else st.get_sentence_embedding_dimension()),
    }
    st.tokenizer.save_pretrained(out / "tokenizer")
    (out / "entry.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return record


def _fuse_and_quantize(st, fp32: Path, out: Path) -> dict[str, int]:
    """Write ``out/model.onnx``: ``fp32`` fused by ONNX Runtime's BERT optimizer, MatMuls in int8.

    Returns the fused operators' counts (recorded in the entry). A model the BERT rules do not
    match is quantised unfused (counts zero): still correct, only slower.
    """
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = st[0].auto_model.config
    fused_path = out / "fused.onnx"
    root_log, level = logging.getLogger(), logging.getLogger().level
    root_log.setLevel(logging.ERROR)  # the optimizer and quantiser log advice on stderr, which curate owns
    try:
        # opt_level 0: only the fusions, saved as portable ONNX (contrib ops), not ONNX Runtime's
        # own machine-specific layout; the session applies its graph optimisations at load.
        fusion = optimize_model(str(fp32), model_type="bert", num_heads=int(config.num_attention_heads),
                                hidden_size=int(config.hidden_size), opt_level=0)
        fused = {k: int(v) for k, v in fusion.get_fused_operator_statistics().items() if v}
        fusion.save_model_to_file(str(fused_path))
        # Per-channel weights on the matrix products only: per-tensor scales (the default) drop
        # the mean cosine to torch to about 0.95, and quantising the fused attention too lowers
        # it (0.9928 vs 0.9943 on BBC News paragraphs) for no measurable speed.
        # DefaultTensorType: shape inference does not type the fused (contrib) ops' outputs.
        quantize_dynamic(fused_path, out / "model.onnx", weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], extra_options={"DefaultTensorType": 1})
    finally:
        root_log.setLevel(level)
    fp32.unlink()
    fused_path.unlink()
    return fused


def _check_pipeline(st, model_dir: Path) -> None:
    kinds = [type(m).__name__ for m in st]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise InputError(f"--model {model_dir}: modules {' -> '.join(kinds)} are not Transformer -> Pooling "
                         "[-> Normalize]; only --backend torch runs this model")
    if _pooling(st) not in ("mean", "cls", "max"):
        raise InputError(f"--model {model_dir}: pooling {_pooling(st)!r} is not mean, cls or max; "
                         "only --backend torch runs this model")


def _pooling(st) -> str:
    from curate.embed.text import _pooling_mode

    return _pooling_mode(st[1])


def _tokenizer_keys(tokenizer) -> set[str]:
    return set(tokenizer(["a"], return_tensors="np").keys())


def _export_onnx(st, path: Path) -> None:
    """The transformer's last hidden state (batch, tokens, width) as ONNX, batch and tokens dynamic."""
    import torch

    names = [k for k in _INPUTS if k in _tokenizer_keys(st.tokenizer)]
    hf = st[0].auto_model.eval()
    # Eager attention exports as plain MatMul/Softmax, the pattern ONNX Runtime's optimizer fuses
    # (the default, SDPA, exports a graph it does not recognise); same arithmetic otherwise.
    if hasattr(hf, "set_attn_implementation"):
        hf.set_attn_implementation("eager")

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hf = hf

        def forward(self, *args):
            return self.hf(**dict(zip(names, args))).last_hidden_state

    # Two texts of different lengths, so the traced graph keeps the padding mask.
    enc = st.tokenizer(["an example", "a somewhat longer example text"], padding=True, return_tensors="pt")
    axes = {k: {0: "batch", 1: "tokens"} for k in [*names, "hidden"]}
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy (TorchScript) exporter needs no network and no extra package; its tracer
        # warnings are about Python branches that the padded example fixes correctly.
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(), tuple(enc[k] for k in names), str(path), input_names=names,
                          output_names=["hidden"], dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """Sentence vectors (n, d) float32 from token states ``hidden`` (n, t, d) and ``mask`` (n, t) of 0/1.

    ``mean``: average over the tokens the mask keeps; ``cls``: the first token; ``max``: the
    largest value per dimension over kept tokens. ``normalize``: unit L2 norm per row.
    """
    if mode == "cls":
        out = hidden[:, 0].astype(np.float32)
    elif mode == "max":
        out = np.where(mask[..., None] > 0, hidden, -1e9).max(1).astype(np.float32)
    else:
        m = mask[..., None].astype(np.float32)
        out = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    if normalize:
        out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return out.astype(np.float32)


class ExportedTextEncoder:
    """The ``TextEncoder`` interface on an ONNX export, run by ONNX Runtime or OpenVINO on the CPU."""

    modality = "text"

    def __init__(self, model: str | None = None, batch_size: int = 64, normalize: bool = False,
                 backend: str = "onnx", cache_dir: str | Path | None = None, threads: int | None = None):
        from curate.embed.text import _offline_and_quiet, resolve_model, weights_sha256

        self.name, self.path = resolve_model(model)
        self.backend, self.batch_size, self.normalize = backend, batch_size, normalize
        self.onnx_path, self.record = exported_model(self.path, weights_sha256(self.path), backend, cache_dir, self.name)
        self.dimension = int(self.record["dimension"])
        self.max_seq_length = int(self.record["max_seq_length"])
        with _offline_and_quiet():
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(str(self.onnx_path.parent / "tokenizer"), local_files_only=True)
        self._run = _openvino(self.onnx_path, threads) if backend == "openvino" else _onnxruntime(self.onnx_path, threads)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        if self.record["do_lower_case"]:
            texts = [t.lower() for t in texts]
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_seq_length,
                              return_tensors="np")

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Tokens per text after truncation, special tokens included: (n,) int."""
        if self.record["do_lower_case"]:
            texts = [t.lower() for t in texts]
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dimension) float32, rows in the order of ``texts``, ``batch_size`` at a time.

        Each batch runs as forward passes of at most ``FORWARD_TOKENS`` padded tokens, longest
        rows first, each pass trimmed to its own longest row (padding is on the right, so the
        trim drops only padding). A pass always holds at least one row.
        """
        out = np.zeros((len(texts), self.dimension), np.float32)
        normalize = self.normalize or self.record["model_normalizes"]
        for s in range(0, len(texts), self.batch_size):
            enc = self.tokenize(texts[s:s + self.batch_size])
            mask = enc["attention_mask"]
            lengths = mask.sum(1)
            order = np.argsort(-lengths, kind="stable")
            a = 0
            while a < len(order):
                # The trim assumes right padding (BERT's); a left-padding tokenizer keeps full width.
                width = int(lengths[order[a]]) if self.tokenizer.padding_side == "right" else mask.shape[1]
                rows = order[a:a + max(1, FORWARD_TOKENS // max(width, 1))]
                feed = {k: enc[k][rows, :width].astype(np.int64) for k in self.record["inputs"]}
                out[s + rows] = pool(self._run(feed), mask[rows, :width], self.record["pooling"], normalize)
                a += len(rows)
        return out

    def describe(self) -> dict[str, Any]:
        from curate.embed.text import weights_sha256

        runtime = "openvino" if self.backend == "openvino" else "onnxruntime"
        mod = __import__(runtime)
        return {
            "name": self.name, "path": str(self.path), "sha256": weights_sha256(self.path),
            "modality": "text", "dimension": self.dimension,
            "normalize": bool(self.normalize or self.record["model_normalizes"]),
            "model_normalizes": self.record["model_normalizes"], "max_seq_length": self.max_seq_length,
            "batch_size": self.batch_size, "forward_tokens": FORWARD_TOKENS, "backend": self.backend, "pooling": self.record["pooling"],
            "image_size": None, "preprocessing": f"{type(self.tokenizer).__name__}, truncate at max_seq_length",
            "quantization": QUANTIZATION[self.backend], "export_sha256": self.record["sha256"],
            "export": {"format": self.record["format"], "opset": self.record["opset"], "recipe": self.record["recipe"],
                       "exported_with": self.record["versions"], "fused": self.record.get("fused", {}), "runtime": f"{runtime} {mod.__version__}"},
        }


def _onnxruntime(path: Path, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 0  # 0: onnxruntime's default, one per core
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Idle threads sleep instead of spinning: on a shared machine (other workers, other jobs)
    # spinning threads steal the cores that the working ones need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda feed: session.run(["hidden"], feed)[0]


def _openvino(path: Path, threads: int | None):
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    return lambda feed: request.infer(feed)[compiled.output(0)].copy()
