"""The packaged EfficientNet-Lite0 feature extractor exported to ONNX and run by ONNX Runtime.

PyTorch's eager CPU kernels spend most of the time at 224 px outside the convolutions' arithmetic
(batch norm, ReLU6 and the TensorFlow-style "same" padding each make a full pass over every
activation); ONNX Runtime folds batch norm into the convolutions, fuses the activation and the
padding and runs depthwise convolutions in a blocked layout: about 5x the images per second on
2 cores, features within float32 rounding of the eager model.

The export is made offline from the packaged weights, once per (weights, image size, torch
version), and cached as ``<cache>/image-onnx/<name>.onnx`` (written aside, then renamed, so a
concurrent run or a killed one never leaves a half-written model). ``<cache>`` is
``$CURATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/curate``, else ``~/.cache/curate``.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from curate.io.provenance import file_sha256


def cache_dir() -> Path:
    """Where exported models are kept (``$CURATE_CACHE_DIR`` > ``$XDG_CACHE_HOME/curate`` > ``~/.cache/curate``)."""
    if os.environ.get("CURATE_CACHE_DIR"):
        return Path(os.environ["CURATE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "curate"


class _Features(torch.nn.Module):
    """``(n, 3, size, size)`` float32 -> ``(n, 1280)``: ``extract_features`` averaged over the grid."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x).mean(dim=(2, 3))


def export_bytes(model: torch.nn.Module, size: int) -> bytes:
    """The ONNX graph of ``_Features(model)`` for ``size`` x ``size`` inputs and any batch size.

    The spatial size is fixed at export: the model computes its "same" padding from the input's
    shape in Python, which tracing records as constants.
    """
    buf = io.BytesIO()
    dummy = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation notes; nothing the user can act on
        torch.onnx.export(_Features(model.eval()), (dummy,), buf, input_names=["pixels"], output_names=["features"],
                          dynamic_axes={"pixels": {0: "n"}, "features": {0: "n"}}, opset_version=17, dynamo=False)
    return buf.getvalue()


def cached_export(model: torch.nn.Module, weights_sha256: str, size: int) -> Path | bytes:
    """The cached export's path, exporting it first if absent; the bytes if the cache is not writable."""
    name = f"efficientnet-lite0-{weights_sha256[:16]}-{size}px-torch{torch.__version__.split('+')[0]}.onnx"
    path = cache_dir() / "image-onnx" / name
    if path.is_file():
        return path
    data = export_bytes(model, size)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)  # atomic: a concurrent exporter writes the same bytes
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return data
    return path


class OnnxFeatures:
    """Runs the exported graph: ``__call__((n, 3, size, size) float32) -> (n, 1280) float32``.

    Rows are independent: a row's features do not depend on the other rows of its batch.
    """

    def __init__(self, model: torch.nn.Module, weights_sha256: str, size: int, threads: int):
        import onnxruntime as ort

        self.source = cached_export(model, weights_sha256, size)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: ORT's informational lines would reach stderr
        # Idle pool threads sleep instead of spinning: between forward calls this process decodes
        # the next images, and on a shared machine other processes need the cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.source) if isinstance(self.source, Path) else self.source,
                                                opts, providers=["CPUExecutionProvider"])
        except Exception:
            # A cached file someone else damaged: export again in memory rather than fail the run.
            self.source = export_bytes(model, size)
            self.session = ort.InferenceSession(self.source, opts, providers=["CPUExecutionProvider"])
        self.sha256 = file_sha256(self.source) if isinstance(self.source, Path) else _sha256(self.source)
        self.ort_version = ort.__version__

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(["features"], {"pixels": np.ascontiguousarray(batch, dtype=np.float32)})[0]


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
