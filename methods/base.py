"""The one method interface. The runner owns the chunk loop, seeding, streaming to disk, resume and
evaluation; a method only turns controls into frames.

Pixel convention (inputs and outputs): ``torch.uint8`` RGB, laid out ``(frames, height, width, 3)``,
values 0..255, on the CPU. Methods move data to their device themselves.

Chunk methods (:class:`ChunkMethod`) are called as::

    state = method.start(clip)                       # once per clip
    for controls in chunks:                          # chunk k covers frames [start, start + chunk_frames)
        frames, state = method.generate_chunk(state, controls)

``frames`` has exactly ``len(controls)`` frames, aligned with the controls. For every chunk after the
first, the runner drops the first ``carry_over_frames`` of them (they re-generate frames the previous
chunk produced) and keeps the rest.

``state`` is a flat ``dict`` of names to tensors or JSON scalars (int, float, str, bool, None). The
runner saves it after every chunk so that an interrupted run resumes exactly; a method must keep
everything it needs between chunks in ``state``, not on ``self``.

Whole-video methods (:class:`VideoMethod`: window fusion, external code) cannot work chunk by chunk;
they get the whole clip and write frames in order to a sink. They are evaluated the same way, but
cannot resume mid-clip.

Memory perturbation (the recovery probe, :mod:`benchmark.probe`). A chunk method may say what it
carries from one chunk into the next and let the probe perturb it once::

    description = method.describe_memory(perturbation)    # before anything is generated
    state = method.perturb_memory(state, perturbation)    # the state after chunk k - 1, before chunk k

:meth:`Method.describe_memory` returns a one-line description of what :meth:`ChunkMethod.perturb_memory`
will act on, or raises :class:`MemoryNotApplicable` with the reason when the method carries nothing a
pixel-space perturbation could act on (it repeats its reference, reads the ground truth, is not
generated chunk by chunk, or an option switched its memory off). The default does the latter, with
the class's :attr:`Method.no_memory_reason`; the probe reports such a method as not applicable, never
as recovered. ``perturb_memory`` returns a new state and leaves the one it was given unchanged; it
applies ``perturbation`` (a :class:`Perturbation`: an operator of :mod:`everanimate.rfm` by name and
strength, with a seed for its random parameters) to the carried memory in pixel space:

- carried frames (``uint8 (r, H, W, 3)``, as Wan-Animate carries them) are perturbed before they are
  encoded again (:func:`perturb_state_frames`);
- a latent memory is decoded, perturbed and encoded once, at the injection chunk only; how depends on
  the latent's layout (see :mod:`methods.everanimate`).

Strength 0 is the identity of every operator, so ``perturb_memory`` with strength 0 changes carried
frames not at all and a latent memory by one decode/encode round trip only.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import numpy as np
import torch

from benchmark.protocol import Protocol

State = dict[str, Any]


@dataclass
class ClipContext:
    """What a method is initialised with: the reference frame(s) and the split's controls.

    ``references`` is ``uint8 (m, H, W, 3)``; ``references[0]`` is frame 0 of the ground truth.
    ``keypoints`` is ``float32 (T, 133, 3)`` (COCO-WholeBody), ``face_boxes`` ``float32 (T, 4)``.
    ``read_controls(start, stop)`` gives the pose and face frames of ``[start, stop)``.
    ``read_ground_truth(start, stop)`` is for oracles and ablations only (``ground-truth``,
    ``vae-roundtrip``); a generative method must never call it.
    """

    clip_id: str
    references: torch.Tensor
    keypoints: np.ndarray
    face_boxes: np.ndarray
    num_frames: int
    protocol: Protocol
    face_size: int
    device: torch.device
    read_controls: Callable[[int, int], "ChunkControls"]
    read_ground_truth: Callable[[int, int], torch.Tensor]

    @property
    def height(self) -> int:
        return self.protocol.height

    @property
    def width(self) -> int:
        return self.protocol.width


@dataclass
class ChunkControls:
    """The controls of one chunk, frames ``[start, start + len)``.

    ``pose``: ``uint8 (L, H, W, 3)`` pose-control frames. ``face``: ``uint8 (L, S, S, 3)`` face crops.
    ``keypoints``: ``float32 (L, 133, 3)``. ``face_boxes``: ``float32 (L, 4)``.
    ``generator``: seeded from (clip id, chunk index) by the protocol's seed rule; use it for all noise.
    """

    index: int
    start: int
    pose: torch.Tensor
    face: torch.Tensor
    keypoints: np.ndarray
    face_boxes: np.ndarray
    generator: torch.Generator = field(repr=False)

    def __len__(self) -> int:
        return int(self.pose.shape[0])


class MemoryNotApplicable(NotImplementedError):
    """Raised by :meth:`Method.describe_memory` and :meth:`ChunkMethod.perturb_memory` when a method
    carries nothing between chunks that a perturbation could act on; ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class Perturbation:
    """One pixel-space perturbation of a method's carried memory.

    ``name`` and ``strength`` select an operator of :data:`everanimate.rfm.PERTURBATIONS` (the
    restorative flow matching perturbations, in their units; strength 0 is the identity); ``seed``
    seeds its random parameters (colour direction, patch placement), so every call of :meth:`apply`
    draws the same ones; ``identity``: also perturb an identity memory, where the method keeps one.
    """

    name: str
    strength: float
    seed: int = 0
    identity: bool = False

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """``uint8 (T, H, W, 3)`` frames perturbed, one draw of the random parameters for all of them."""
        from everanimate.rfm import perturb

        return perturb(frames, self.name, self.strength, torch.Generator().manual_seed(self.seed))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "strength": self.strength, "seed": self.seed, "identity": self.identity}


class Method(abc.ABC):
    """Common part of both method kinds. Subclasses set ``name`` and take their options as keyword
    arguments of ``__init__``, which the runner records in the results. ``--method-arg`` accepts
    exactly those keyword arguments (typed by their defaults or annotations), except
    ``internal_options``; a method without its own ``__init__`` takes no options."""

    name: ClassVar[str]
    #: Extras that must be installed, named in the error when an import fails.
    requires_extra: ClassVar[str | None] = None
    #: Frames shared by consecutive chunks, unless an option changes it (:meth:`carry_over_frames`).
    default_carry_over: ClassVar[int] = 0
    #: Constructor arguments for code and tests, never taken from the command line.
    internal_options: ClassVar[frozenset[str]] = frozenset({"backbone"})

    def __init__(self, device: str | torch.device = "cpu", **options: Any):
        self.device = torch.device(device)
        self.options: dict[str, Any] = dict(options)

    def describe(self) -> dict[str, Any]:
        """Method name and arguments, as written into every result."""
        return {"name": self.name, "arguments": dict(self.options)}

    def carry_over_frames(self, protocol: Protocol) -> int:
        """Frames each chunk after the first re-generates from the previous one."""
        return self.default_carry_over

    def sampling_steps(self, protocol: Protocol) -> int:
        """Denoising steps per chunk; methods with a ``steps`` option override this."""
        return protocol.sampling_steps

    def effective_protocol(self, protocol: Protocol) -> Protocol:
        """``protocol`` with the carry-over and sampling steps this method runs with: the protocol
        recorded in its results, and hashed."""
        return protocol.replace(carry_over=self.carry_over_frames(protocol), sampling_steps=self.sampling_steps(protocol))

    #: Why this method carries no memory a perturbation could act on; the default
    #: :meth:`describe_memory` raises :class:`MemoryNotApplicable` with it.
    no_memory_reason: ClassVar[str | None] = None

    def describe_memory(self, perturbation: Perturbation) -> str:
        """What :meth:`ChunkMethod.perturb_memory` perturbs with these options, in one line; raises
        :class:`MemoryNotApplicable` with the reason when the method carries nothing (the default)."""
        raise MemoryNotApplicable(self.no_memory_reason or f"{self.name} does not say what it carries between chunks (it implements no perturb_memory)")


class ChunkMethod(Method):
    @abc.abstractmethod
    def start(self, clip: ClipContext) -> State:
        """Initialise a clip; return the state passed to the first chunk."""

    @abc.abstractmethod
    def generate_chunk(self, state: State, controls: ChunkControls) -> tuple[torch.Tensor, State]:
        """Return ``uint8 (len(controls), H, W, 3)`` frames aligned with ``controls`` and the new state."""

    def perturb_memory(self, state: State, perturbation: Perturbation) -> State:
        """The state carried into the next chunk with ``perturbation`` applied to its memory, as a new
        state (``state`` is left unchanged). Raises :class:`MemoryNotApplicable` when the method carries
        nothing (see :meth:`describe_memory`); a method with a memory overrides both."""
        self.describe_memory(perturbation)
        raise NotImplementedError(f"{type(self).__name__} describes its memory but does not implement perturb_memory")


class VideoMethod(Method):
    no_memory_reason = "a whole-video method: it is not generated chunk by chunk, so no memory passes from one chunk to the next"

    @abc.abstractmethod
    def generate_video(self, clip: ClipContext, num_frames: int, write: Callable[[torch.Tensor], None]) -> None:
        """Generate frames ``[0, num_frames)`` and pass them in order to ``write`` as ``uint8 (B, H, W, 3)``
        batches of any size."""


def perturb_state_frames(state: State, key: str, perturbation: Perturbation) -> State:
    """A copy of ``state`` with the carried frames ``state[key]`` (``uint8 (r, H, W, 3)``) perturbed."""
    frames = state.get(key)
    if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        found = "nothing" if frames is None else f"{type(frames).__name__} {tuple(getattr(frames, 'shape', ()))}"
        raise ValueError(f"state[{key!r}] should hold the carried frames, uint8 (r, H, W, 3); found {found}")
    return {**state, key: perturbation.apply(frames)}


def check_frames(frames: Any, expected: tuple[int, int, int, int], clip_id: str, where: str) -> torch.Tensor:
    """Validate a method's output; raises :class:`benchmark.errors.MethodOutputError`."""
    from benchmark.errors import MethodOutputError

    if not isinstance(frames, torch.Tensor):
        raise MethodOutputError(clip_id, None, f"{where}: method returned {type(frames).__name__}, expected a torch.Tensor")
    if tuple(frames.shape) != expected:
        raise MethodOutputError(clip_id, None, f"{where}: frames have shape {tuple(frames.shape)}, expected {expected}")
    if frames.dtype != torch.uint8:
        if frames.is_floating_point() and torch.isnan(frames).any():
            raise MethodOutputError(clip_id, None, f"{where}: frames contain NaN")
        if frames.is_floating_point() and (frames.min() < 0 or frames.max() > 255):
            raise MethodOutputError(clip_id, None, f"{where}: frames out of range [{float(frames.min()):g}, {float(frames.max()):g}], expected uint8 0..255")
        raise MethodOutputError(clip_id, None, f"{where}: frames have dtype {frames.dtype}, expected torch.uint8")
    return frames.detach().to("cpu").contiguous()


def state_to_disk(state: State) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a state into tensors (for safetensors) and JSON scalars."""
    tensors, scalars = {}, {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().to("cpu").contiguous()
        elif value is None or isinstance(value, (bool, int, float, str)):
            scalars[key] = value
        else:
            raise TypeError(f"state entry {key!r} is {type(value).__name__}; states hold tensors and JSON scalars only")
    return tensors, scalars


def state_from_disk(tensors: Mapping[str, torch.Tensor], scalars: Mapping[str, Any]) -> State:
    return {**scalars, **tensors}


def load_json_config(path: str | Path) -> dict:
    import json

    return json.loads(Path(path).read_text())
