"""The base of the methods that run on the shared Wan backbone (``wan-animate``, ``vae-roundtrip``,
``unianimate-dit``), so that they, and any later method on the same backbone, hold it one way: the
preset and weights options, the weights check at construction, the lazily loaded backbone or VAE,
the weights fingerprint in ``describe()`` and the ``steps`` option.

A concrete method inherits from this class and from :class:`~methods.base.ChunkMethod` or
:class:`~methods.base.VideoMethod`, in that order, and still spells out every option as a keyword
argument of its own ``__init__``: the registry types and checks ``--method-arg`` against that
signature (:func:`methods.registry.option_parameters`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmark.protocol import Protocol

from ..base import Method
from .backbone import LatentCodec, WanBackbone
from .runtime import BackboneHolder


class WanMethod(Method):
    """Holds the backbone of a method. ``backbone=`` injects an already built backbone (tests), whose
    name is then recorded as the preset; ``prompt`` is recorded only when given, so runs without one
    keep their recorded arguments. ``options`` are the method's own recorded arguments, after
    ``preset`` and ``weights``."""

    requires_extra = "wan"
    #: Methods that use only the VAE check and load no transformer.
    codec_only: ClassVar[bool] = False

    #: Denoising steps per chunk; None follows the protocol (:meth:`sampling_steps`).
    steps: int | None = None

    def __init__(
        self,
        device: str | torch.device,
        preset: str,
        weights: str | Path | None,
        backbone: WanBackbone | None,
        prompt: str | None = None,
        **options: Any,
    ):
        recorded: dict[str, Any] = {"preset": preset if backbone is None else backbone.name, "weights": weights, **options}
        if prompt is not None:
            recorded["prompt"] = prompt
        super().__init__(device, **recorded)
        self._holder = BackboneHolder(preset, weights, self.device, backbone, prompt, codec_only=self.codec_only)

    def describe(self) -> dict[str, Any]:
        return self._holder.describe(super().describe())

    @property
    def backbone(self) -> WanBackbone:
        """The whole backbone, loaded on first use."""
        return self._holder.backbone

    @property
    def codec(self) -> LatentCodec:
        """Only the VAE: loads no transformer unless the backbone was loaded already."""
        return self._holder.codec

    def sampling_steps(self, protocol: Protocol) -> int:
        return int(self.steps) if self.steps is not None else protocol.sampling_steps
