"""The metric networks, built through their reference libraries from located weights.

- LPIPS: ``lpips.LPIPS`` v0.1 (linear heads from the lpips wheel); the AlexNet/VGG backbone is
  loaded from torchvision's ImageNet state dict, exactly what ``lpips.LPIPS(pretrained=True)`` does.
- FID: pytorch-fid's ``InceptionV3`` (pool3, 2048-d) with its own ``resize_input`` (bilinear to
  299x299) and ``normalize_input`` (``[0, 1] -> [-1, 1]``); its weights are handed to pytorch-fid's
  own construction code, so the architecture is the library's.
- V-MAE: ``transformers.VideoMAEModel``, features = mean of the last hidden state over tokens;
  frames preprocessed like ``VideoMAEImageProcessor`` (shortest edge to 224, centre crop, ImageNet
  mean/std).

Every builder returns a :class:`LoadedNetwork` or raises :class:`NetworkUnavailable` with a reason
that says how to get the weights. ``WeightsConfig.random_init`` builds the same architectures with
seeded random weights (tests and performance runs only; results are flagged).
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from unittest import mock

import torch
from torch import nn

from ..weights import WeightsConfig, fetch, load_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_WEIGHTS_NOTE = "random-init weights (test/performance run, not comparable)"


class NetworkUnavailable(Exception):
    """A metric network cannot be built here; the message says why and how to fix it."""


@dataclass
class LoadedNetwork:
    module: nn.Module
    source: str
    random_weights: bool = False


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for a block without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _locate_or_fetch(weights: WeightsConfig, name: str) -> Path | None:
    """Path of ``name``'s weights; downloads them when allowed; None when absent."""
    location = weights.locate(name)
    if location.present:
        return location.path
    if weights.allow_download:
        try:
            return fetch(name)
        except RuntimeError as exc:
            raise NetworkUnavailable(f"{exc}; {weights.how_to_fix(name)}") from exc
    return None


def _missing(weights: WeightsConfig, name: str, what: str) -> NetworkUnavailable:
    location = weights.locate(name)
    return NetworkUnavailable(f"{what} weights not found ({location.missing}): {weights.how_to_fix(name)}")


# ---- LPIPS ------------------------------------------------------------------------------------


def lpips_with_random_backbone(net: str = "alex", seed: int = 0) -> nn.Module:
    """``lpips.LPIPS(net=net, pnet_rand=True)`` v0.1: the trained linear heads from the lpips wheel
    on a seeded random backbone (builds offline)."""
    import lpips

    if net not in ("alex", "vgg"):
        raise ValueError(f"LPIPS backbone must be 'alex' or 'vgg', got {net!r}")
    with seeded(seed), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # lpips passes the old `pretrained=` flag
        return lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False).eval()


def build_lpips(weights: WeightsConfig, net: str = "alex", seed: int = 0) -> LoadedNetwork:
    """``lpips.LPIPS(net=net)`` v0.1 with the ImageNet backbone from the located torchvision file."""
    try:
        import lpips  # noqa: F401
    except ImportError as exc:
        raise NetworkUnavailable("lpips is not installed: pip install 'everanimate-bench[metrics]'") from exc
    name = f"lpips_{net}"
    if name not in ("lpips_alex", "lpips_vgg"):
        raise ValueError(f"LPIPS backbone must be 'alex' or 'vgg', got {net!r}")
    path = _locate_or_fetch(weights, name)
    if path is None and not weights.random_init:
        raise _missing(weights, name, f"LPIPS {net} backbone")
    model = lpips_with_random_backbone(net, seed)
    if path is None:
        return LoadedNetwork(model, f"lpips v0.1 {net}, {RANDOM_WEIGHTS_NOTE}", random_weights=True)
    load_lpips_backbone(model, load_state_dict(path))
    return LoadedNetwork(model, f"lpips v0.1 {net}, backbone {path}")


def load_lpips_backbone(model: nn.Module, torchvision_state: dict[str, torch.Tensor]) -> None:
    """Copy torchvision's ``features.<i>.*`` tensors into lpips's ``slice<k>.<i>.*`` layers.

    lpips splits torchvision's ``features`` into slices that keep each layer's original index as
    its name, so the mapping is by that index; every backbone parameter must be covered.
    """
    features = {key[len("features.") :]: value for key, value in torchvision_state.items() if key.startswith("features.")}
    loaded = 0
    with torch.no_grad():
        for slice_name, block in model.net.named_children():
            for index, layer in block.named_children():
                for param_name, param in layer.named_parameters(recurse=False):
                    key = f"{index}.{param_name}"
                    if key not in features:
                        raise KeyError(f"backbone weights lack features.{key} (needed by lpips {slice_name})")
                    param.copy_(features[key])
                    loaded += 1
    expected = sum(1 for _ in model.net.parameters())
    if loaded != expected:
        raise KeyError(f"loaded {loaded} of {expected} LPIPS backbone tensors")


# ---- Inception (FID) --------------------------------------------------------------------------


class InceptionFeatures(nn.Module):
    """pytorch-fid's InceptionV3 pool3 features: ``(B, 3, H, W)`` in ``[0, 1]`` -> ``(B, 2048)``."""

    feature_dim = 2048

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception(images)[0].flatten(1)


def pytorch_fid_inception(state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """``pytorch_fid.inception.InceptionV3([pool3])`` built by pytorch-fid's own code, with its
    download replaced by ``state_dict`` (same format as ``FID_WEIGHTS_URL``)."""
    from pytorch_fid import inception as fid_inception

    with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: state_dict):
        model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True, normalize_input=True)
    return model.eval()


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the format of pytorch-fid's Inception weights file.

    pytorch-fid only builds its FID Inception together with loading weights, so the network is
    built with loading intercepted, then its convolutions get He-initialised weights so that
    activations stay O(1) through the 94 layers (PyTorch's default init shrinks them to ~1e-8).
    """
    import torchvision
    from pytorch_fid import inception as fid_inception

    built: list[nn.Module] = []
    with (
        seeded(seed),
        mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: {}),
        mock.patch.object(torchvision.models.Inception3, "load_state_dict", lambda self, *args, **kwargs: built.append(self)),
    ):
        fid_inception.fid_inception_v3()
        for module in built[0].modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return {key: value.clone() for key, value in built[0].state_dict().items()}


def build_inception(weights: WeightsConfig, seed: int = 0) -> LoadedNetwork:
    try:
        import pytorch_fid  # noqa: F401
    except ImportError as exc:
        raise NetworkUnavailable("pytorch-fid is not installed: pip install 'everanimate-bench[metrics]'") from exc
    path = _locate_or_fetch(weights, "inception")
    if path is None:
        if not weights.random_init:
            raise _missing(weights, "inception", "Inception (FID)")
        model = pytorch_fid_inception(random_inception_state_dict(seed))
        return LoadedNetwork(InceptionFeatures(model), f"pytorch-fid InceptionV3 pool3, {RANDOM_WEIGHTS_NOTE}", random_weights=True)
    return LoadedNetwork(InceptionFeatures(pytorch_fid_inception(load_state_dict(path))), f"pytorch-fid InceptionV3 pool3, {path}")


# ---- VideoMAE ---------------------------------------------------------------------------------


class VideoMAEFeatures(nn.Module):
    """Mean-pooled last hidden state of a ``VideoMAEModel`` for 16-frame clips.

    ``preprocess`` maps ``uint8 (T, H, W, 3)`` frames to the model's input like
    ``VideoMAEImageProcessor``: bilinear antialiased resize of the shortest edge to ``resize_to``
    (on uint8, as its torchvision backend does), centre crop ``crop_to``, then
    ``(x - 255 mean) / (255 std)``. ``forward`` maps ``(B, T, 3, S, S)`` to ``(B, hidden)``.
    """

    def __init__(
        self,
        model: nn.Module,
        resize_to: int | None = None,
        crop_to: int | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        size = int(model.config.image_size)
        self.resize_to = resize_to or size
        self.crop_to = crop_to or size
        self.num_frames = int(model.config.num_frames)
        self.feature_dim = int(model.config.hidden_size)
        self.register_buffer("scaled_mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1) * 255, persistent=False)
        self.register_buffer("scaled_std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1) * 255, persistent=False)

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """Shortest edge to ``resize_to``, the other scaled and truncated (transformers' rule)."""
        if width <= height:
            return int(self.resize_to * height / width), self.resize_to
        return self.resize_to, int(self.resize_to * width / height)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as tvF

        images = frames.permute(0, 3, 1, 2)
        new_height, new_width = self.resized_size(*images.shape[-2:])
        images = tvF.resize(images, [new_height, new_width], interpolation=tvF.InterpolationMode.BILINEAR, antialias=True)
        top, left = int((new_height - self.crop_to) / 2.0), int((new_width - self.crop_to) / 2.0)
        images = images[..., top : top + self.crop_to, left : left + self.crop_to]
        return (images.to(torch.float32) - self.scaled_mean) / self.scaled_std

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=clips).last_hidden_state.mean(dim=1)


def _preprocessor_settings(folder: Path) -> dict:
    """Resize/crop/mean/std from a checkpoint's ``preprocessor_config.json``, when it has one."""
    config_path = folder / "preprocessor_config.json"
    if not config_path.is_file():
        return {}
    config = json.loads(config_path.read_text())

    def edge(value) -> int | None:
        if isinstance(value, dict):
            return value.get("shortest_edge") or value.get("height")
        return value

    settings: dict = {}
    if edge(config.get("size")):
        settings["resize_to"] = int(edge(config["size"]))
    if edge(config.get("crop_size")):
        settings["crop_to"] = int(edge(config["crop_size"]))
    if config.get("image_mean"):
        settings["mean"] = tuple(float(v) for v in config["image_mean"])
    if config.get("image_std"):
        settings["std"] = tuple(float(v) for v in config["image_std"])
    return settings


def build_videomae(weights: WeightsConfig, seed: int = 0) -> LoadedNetwork:
    try:
        from transformers import VideoMAEConfig, VideoMAEModel
    except ImportError as exc:
        raise NetworkUnavailable("transformers is not installed: pip install 'everanimate-bench[metrics]'") from exc
    folder = _locate_or_fetch(weights, "videomae")
    if folder is not None:
        model = VideoMAEModel.from_pretrained(str(folder), local_files_only=True)
        return LoadedNetwork(VideoMAEFeatures(model, **_preprocessor_settings(folder)), f"VideoMAEModel {folder}")
    if not weights.random_init:
        raise _missing(weights, "videomae", "VideoMAE")
    with seeded(seed):
        model = VideoMAEModel(VideoMAEConfig())
    return LoadedNetwork(VideoMAEFeatures(model), f"VideoMAEModel (videomae-base config), {RANDOM_WEIGHTS_NOTE}", random_weights=True)


def as_videomae_features(module: nn.Module) -> VideoMAEFeatures:
    """Accept a bare ``VideoMAEModel`` (e.g. a tiny one built from a config) as well as the wrapper."""
    return module if isinstance(module, VideoMAEFeatures) else VideoMAEFeatures(module)
