"""LoRA key names: the official EverAnimate checkpoint's (original Wan / DiffSynth module names) and
ours (peft's state dict of diffusers' ``WanAnimateTransformer3DModel``).

One adapted linear ``W`` (``out_features x in_features``) has two tensors: ``lora_A`` of shape
``(rank, in_features)`` and ``lora_B`` of shape ``(out_features, rank)``; the layer adds
``(alpha / rank) B A x``. The official file names them

    blocks.N.self_attn.q.lora_A.default.weight     (peft's adapter name ``default``, no prefix, no alpha)

and we name them ``blocks.N.attn1.to_q.lora_A.weight``. Import also accepts ``lora_down``/``lora_up``
for ``lora_A``/``lora_B``, a ``diffusion_model.`` prefix and one ``.alpha`` scalar per module.

The renaming itself is diffusers' ``_convert_non_diffusers_wan_lora_to_diffusers``. It wants the
``diffusion_model.`` prefix and no ``.default``, returns ``transformer.``-prefixed names, drops
``.diff`` keys it cannot place, and does not check that every ``lora_A`` has its ``lora_B`` or that
the shapes agree on the rank; :func:`official_to_peft` normalises the keys for it and checks all of
that, so no key is dropped or left unused.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from benchmark.errors import BenchmarkError

#: Official module name (inside ``blocks.N.``) -> diffusers' module name. These are the targets of
#: the LoRA (``methods.wan.backbone.LORA_TARGET_MODULES``); cross-attention ``k_img``/``v_img`` are not.
OFFICIAL_TO_DIFFUSERS: dict[str, str] = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
DIFFUSERS_TO_OFFICIAL = {ours: official for official, ours in OFFICIAL_TO_DIFFUSERS.items()}

_BLOCK = r"blocks\.(?P<block>0|[1-9][0-9]*)"
_OFFICIAL_KEY = re.compile(
    r"(?:diffusion_model\.)?" + _BLOCK + r"\.(?P<module>self_attn\.[qkvo]|cross_attn\.[qkvo]|ffn\.[02])"
    r"\.(?:(?P<matrix>lora_A|lora_B|lora_down|lora_up)(?:\.default)?\.weight|(?P<alpha>alpha))"
)
_PEFT_KEY = re.compile(_BLOCK + r"\.(?P<module>" + "|".join(re.escape(name) for name in DIFFUSERS_TO_OFFICIAL) + r")\.(?P<matrix>lora_A|lora_B)\.weight")
_DOWN_UP = {"lora_A": "A", "lora_down": "A", "lora_B": "B", "lora_up": "B"}
#: Names listed in full in an error message; the rest are counted.
_LISTED = 8


class LoraError(BenchmarkError):
    """A LoRA file or folder that is missing, malformed, or does not fit the backbone."""


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown}, ... ({len(names)} in all)"


@dataclass
class _Module:
    """The tensors of one adapted linear, by role ``A``/``B``/``alpha``, with the source key of each."""

    keys: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class ConvertedLora:
    """Tensors in our naming, the rank inferred from their shapes, the alpha to load them with, and
    how the source was named (for the import record)."""

    tensors: dict[str, torch.Tensor]
    rank: int
    alpha: float
    blocks: int
    naming: str  # "lora_A/lora_B" or "lora_down/lora_up"
    alpha_in_file: str  # "none", "uniform" (kept as the alpha) or "per-module, folded into the weights"


def _check_modules(modules: dict[tuple[int, str], _Module], targets: tuple[str, ...], where: str) -> int:
    """Every module has ``A`` and ``B`` of one rank, every block from 0 up has every target module,
    and all modules share the rank, which is returned. ``targets``: the module names, in the naming
    of the keys."""
    unmatched = []
    for entry in (modules[place] for place in sorted(modules)):
        lacking = [label for role, label in (("A", "lora_A"), ("B", "lora_B")) if role not in entry.keys]
        if lacking:
            unmatched.append(f"{min(entry.keys.values())} has no {' or '.join(lacking)}")
    if unmatched:
        raise LoraError(f"{where}: unmatched LoRA keys: {_listing(unmatched)}")
    bad, ranks = [], defaultdict(list)
    for (block, module), entry in sorted(modules.items()):
        down, up = entry.tensors["A"], entry.tensors["B"]
        if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1] or not down.is_floating_point() or not up.is_floating_point():
            bad.append(f"blocks.{block}.{module} (lora_A {tuple(down.shape)} {down.dtype}, lora_B {tuple(up.shape)} {up.dtype})")
            continue
        alpha = entry.tensors.get("alpha")
        if alpha is not None and (alpha.numel() != 1 or not torch.isfinite(alpha).all() or float(alpha) <= 0):
            given = alpha.flatten().tolist() if alpha.numel() <= 4 else f"shape {tuple(alpha.shape)}"
            bad.append(f"{entry.keys['alpha']} (alpha must be one positive finite number, got {given})")
            continue
        ranks[int(down.shape[0])].append(f"blocks.{block}.{module}")
    if bad:
        raise LoraError(f"{where}: lora_A must be float (rank, in) and lora_B float (out, rank) with the same rank: {_listing(bad)}")
    if len(ranks) > 1:
        described = "; ".join(f"rank {rank}: {_listing(names)}" for rank, names in sorted(ranks.items()))
        raise LoraError(f"{where}: the modules disagree on the rank ({described}); one LoRA has one rank")
    blocks = 1 + max(block for block, _ in modules)
    missing = [f"blocks.{block}.{module}" for block in range(blocks) for module in targets if (block, module) not in modules]
    if missing:
        raise LoraError(f"{where}: no LoRA for {_listing(missing)}; every block 0..{blocks - 1} needs q, k, v, o of both attentions and both FFN linears")
    return next(iter(ranks))


def official_to_peft(state: dict[str, torch.Tensor], where: str = "LoRA") -> ConvertedLora:
    """The official naming (``blocks.N.self_attn.q.lora_A.default.weight``; also ``lora_down``/
    ``lora_up``, a ``diffusion_model.`` prefix, ``.alpha``) -> our peft naming for diffusers'
    ``WanAnimateTransformer3DModel``. Raises :class:`LoraError` listing every key that is not a LoRA
    tensor of a target module, is unmatched, repeated, or disagrees on the rank. ``where`` names the
    source in messages.

    Alpha: none in the file gives ``alpha = rank`` (scale 1); one value for every module is kept as
    the alpha and the tensors are unchanged; alphas that differ per module are folded into the weights
    by diffusers' converter (scale 1 afterwards)."""
    if not state:
        raise LoraError(f"{where}: holds no tensors")
    modules: dict[tuple[int, str], _Module] = defaultdict(_Module)
    unknown, repeated, conventions = [], [], defaultdict(list)
    for key in sorted(state):
        match = _OFFICIAL_KEY.fullmatch(key)
        if match is None:
            unknown.append(key)
            continue
        role = "alpha" if match["alpha"] else _DOWN_UP[match["matrix"]]
        if match["matrix"]:
            conventions["lora_A/lora_B" if match["matrix"] in ("lora_A", "lora_B") else "lora_down/lora_up"].append(key)
        entry = modules[(int(match["block"]), match["module"])]
        if role in entry.keys:
            repeated.append(f"{entry.keys[role]} and {key}")
            continue
        entry.keys[role], entry.tensors[role] = key, state[key]
    if unknown:
        raise LoraError(
            f"{where}: {len(unknown)} key(s) are not LoRA tensors of a target module "
            f"(blocks.N.{{self_attn,cross_attn}}.{{q,k,v,o}} or blocks.N.ffn.{{0,2}}): {_listing(unknown)}"
        )
    if repeated:
        raise LoraError(f"{where}: the same LoRA tensor is given twice: {_listing(repeated)}")
    if len(conventions) > 1:
        examples = [names[0] for names in conventions.values()]
        raise LoraError(f"{where}: mixes lora_A/lora_B and lora_down/lora_up naming (e.g. {', '.join(examples)}); use one")
    rank = _check_modules(modules, tuple(OFFICIAL_TO_DIFFUSERS), where)
    naming = next(iter(conventions))

    alphas = {float(entry.tensors["alpha"]) for entry in modules.values() if "alpha" in entry.tensors}
    with_alpha = sum("alpha" in entry.tensors for entry in modules.values())
    uniform = len(alphas) == 1 and with_alpha == len(modules)
    alpha_in_file = "none" if not alphas else "uniform" if uniform else "per-module, folded into the weights"
    down, up = ("lora_A", "lora_B") if naming == "lora_A/lora_B" else ("lora_down", "lora_up")
    prepared: dict[str, torch.Tensor] = {}
    for (block, module), entry in modules.items():
        stem = f"diffusion_model.blocks.{block}.{module}"
        prepared[f"{stem}.{down}.weight"] = entry.tensors["A"]
        prepared[f"{stem}.{up}.weight"] = entry.tensors["B"]
        if "alpha" in entry.tensors and not uniform:
            prepared[f"{stem}.alpha"] = entry.tensors["alpha"]
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    try:
        converted = _convert_non_diffusers_wan_lora_to_diffusers(prepared)
    except (KeyError, ValueError) as exc:
        raise LoraError(f"{where}: diffusers' Wan LoRA converter refused the keys: {exc}") from exc
    tensors = {key.removeprefix("transformer."): value.contiguous() for key, value in converted.items()}

    expected = {f"blocks.{block}.{OFFICIAL_TO_DIFFUSERS[module]}.lora_{m}.weight" for block, module in modules for m in "AB"}
    if set(tensors) != expected:
        odd = sorted(set(tensors) ^ expected)
        raise LoraError(f"{where}: diffusers' converter gave keys other than the expected ones ({_listing(odd)}); this diffusers version maps Wan names differently")
    alpha = next(iter(alphas)) if uniform else float(rank)
    blocks = 1 + max(block for block, _ in modules)
    return ConvertedLora(tensors, rank, alpha, blocks, naming, alpha_in_file)


def peft_to_official(tensors: dict[str, torch.Tensor], rank: int, alpha: float, where: str = "LoRA") -> dict[str, torch.Tensor]:
    """Our peft naming -> the official naming (``lora_A.default.weight``, no prefix, no alpha key).
    The official naming has no alpha (scale 1), so when ``alpha != rank`` the scale ``alpha / rank``
    is folded into every ``lora_B``: the layer's ``(alpha / rank) B A`` is unchanged."""
    modules: dict[tuple[int, str], _Module] = defaultdict(_Module)
    unknown = []
    for key in sorted(tensors):
        match = _PEFT_KEY.fullmatch(key)
        if match is None:
            unknown.append(key)
            continue
        entry = modules[(int(match["block"]), match["module"])]
        role = _DOWN_UP[match["matrix"]]
        entry.keys[role], entry.tensors[role] = key, tensors[key]
    if unknown:
        raise LoraError(f"{where}: {len(unknown)} key(s) are not LoRA tensors of a target module: {_listing(unknown)}")
    if not modules:
        raise LoraError(f"{where}: holds no tensors")
    found = _check_modules(modules, tuple(DIFFUSERS_TO_OFFICIAL), where)
    if found != rank:
        raise LoraError(f"{where}: the tensors have rank {found} but the config says lora_rank {rank}")
    scale = alpha / rank
    official: dict[str, torch.Tensor] = {}
    for (block, module), entry in sorted(modules.items()):
        stem = f"blocks.{block}.{DIFFUSERS_TO_OFFICIAL[module]}"
        official[f"{stem}.lora_A.default.weight"] = entry.tensors["A"].contiguous()
        official[f"{stem}.lora_B.default.weight"] = (entry.tensors["B"] if scale == 1.0 else entry.tensors["B"] * scale).contiguous()
    return official


__all__ = ["ConvertedLora", "DIFFUSERS_TO_OFFICIAL", "LoraError", "OFFICIAL_TO_DIFFUSERS", "official_to_peft", "peft_to_official"]
