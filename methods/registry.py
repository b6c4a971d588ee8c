"""Lazy method registry: a name maps to ``"module:Class"``; nothing is imported until a method is built,
so ``--method ground-truth`` never imports diffusers."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Method

METHODS: dict[str, str] = {
    "ground-truth": "methods.sanity:GroundTruth",
    "reference-copy": "methods.sanity:ReferenceCopy",
    "wan-animate": "methods.wan_animate:WanAnimate",
    "vae-roundtrip": "methods.vae_roundtrip:VaeRoundTrip",
    "unianimate-dit": "methods.unianimate_dit:UniAnimateDiT",
}


def available() -> list[str]:
    return sorted(METHODS)


def method_class(name: str) -> type[Method]:
    """The class registered under ``name``; ``"package.module:Class"`` names an unregistered method."""
    if ":" in name:
        target = name
    elif name in METHODS:
        target = METHODS[name]
    else:
        raise KeyError(f"unknown method {name!r}; known methods: {', '.join(available())} (or give module:Class)")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(
            f"method {name!r} needs a package that is not installed ({exc.name or exc}); "
            "install the project's extras, e.g. pip install -e '.[all]'"
        ) from exc
    return getattr(module, class_name)


def build(name: str, device: str = "cpu", **options: Any) -> Method:
    return method_class(name)(device=device, **options)


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["steps=4", "refert_num=5", "weights=/x"]`` -> typed dict (int, float, bool or str)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"method option {pair!r} is not KEY=VALUE")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    continue
        options[key.replace("-", "_")] = value
    return options
