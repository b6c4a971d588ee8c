"""Lazy method registry: a name maps to ``"module:Class"``; nothing is imported until a method is built,
so ``--method ground-truth`` never imports diffusers.

Everything a user types is checked before any clip is generated: the method name or
``module:Class`` target, that the target is a method class, and every ``--method-arg`` against the
options the class's constructor declares (:func:`method_options`).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from .base import ChunkMethod, Method, VideoMethod

METHODS: dict[str, str] = {
    "everanimate": "methods.everanimate:EverAnimate",
    "ground-truth": "methods.sanity:GroundTruth",
    "reference-copy": "methods.sanity:ReferenceCopy",
    "wan-animate": "methods.wan_animate:WanAnimate",
    "vae-roundtrip": "methods.vae_roundtrip:VaeRoundTrip",
    "unianimate-dit": "methods.unianimate_dit:UniAnimateDiT",
}


class MethodError(ValueError):
    """A method name, class or option the user gave is not usable."""


def available() -> list[str]:
    return sorted(METHODS)


def method_class(name: str) -> type[Method]:
    """The class registered under ``name``; ``"package.module:Class"`` names an unregistered method."""
    if ":" in name:
        target = name
    elif name in METHODS:
        target = METHODS[name]
    else:
        raise MethodError(f"unknown method {name!r}; known methods: {', '.join(available())} (or give package.module:Class)")
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise MethodError(f"method {name!r}: give package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name) and name not in METHODS:
            raise MethodError(f"method {name!r}: no module {module_name!r}") from exc
        raise MethodError(
            f"method {name!r} needs a package that is not installed ({exc.name or exc}); install the project's extras, e.g. pip install -e '.[all]'"
        ) from exc
    except ImportError as exc:
        raise MethodError(f"method {name!r}: importing {module_name!r} failed: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise MethodError(f"method {name!r}: module {module_name!r} has no {class_name!r}")
    if not (inspect.isclass(cls) and issubclass(cls, (ChunkMethod, VideoMethod))) or inspect.isabstract(cls):
        raise MethodError(f"method {name!r}: {target} is not a concrete methods.base.ChunkMethod or VideoMethod subclass")
    return cls


def option_parameters(cls: type[Method]) -> dict[str, inspect.Parameter] | None:
    """The options ``cls`` accepts from the command line, or None when its constructor takes any
    keyword (``**options``). A class without its own ``__init__`` takes none."""
    if cls.__init__ is Method.__init__:
        return {}
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    skip = {"self", "device", *cls.internal_options}
    return {n: p for n, p in parameters.items() if n not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _expected_type(parameter: inspect.Parameter) -> type | None:
    """bool, int, float or str from a parameter's default, else from its annotation; None if unknown."""
    if parameter.default is not inspect.Parameter.empty and parameter.default is not None:
        kind = type(parameter.default)
        return kind if kind in (bool, int, float, str) else None
    annotation = parameter.annotation
    names = {a.strip() for a in annotation.split("|")} if isinstance(annotation, str) else {getattr(annotation, "__name__", "")}
    for kind in (bool, int, float, str):
        if kind.__name__ in names:
            return kind
    return str if "Path" in names else None


_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def _convert(raw: str, kind: type | None) -> Any:
    if kind is bool:
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise ValueError("expects true or false")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError("expects an integer") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError("expects a number") from None
    if kind is str:
        return raw
    return _guess(raw)


def _guess(raw: str) -> Any:
    """Bool, int, float or the string itself, for options whose type the constructor does not say."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            continue
    return raw


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``["steps=4", "refert-num=5"]`` -> ``{"steps": "4", "refert_num": "5"}`` (values still text)."""
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise MethodError(f"method option {pair!r} is not KEY=VALUE")
        key = key.replace("-", "_")
        if key in options:
            raise MethodError(f"method option {key!r} given twice")
        options[key] = raw
    return options


def method_options(cls: type[Method], raw: dict[str, str]) -> dict[str, Any]:
    """Typed options for ``cls``; an unknown option or a value of the wrong type is a
    :class:`MethodError` that lists what the method accepts."""
    parameters = option_parameters(cls)
    if parameters is None:
        return {key: _guess(value) for key, value in raw.items()}
    known = ", ".join(sorted(parameters)) or "none"
    typed: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in parameters:
            raise MethodError(f"method {cls.name!r} has no option {key!r}; its options: {known}")
        try:
            typed[key] = _convert(value, _expected_type(parameters[key]))
        except ValueError as exc:
            raise MethodError(f"method {cls.name!r}: option {key}={value!r} {exc}") from None
    return typed


def build(name: str, device: str = "cpu", **options: Any) -> Method:
    return method_class(name)(device=device, **options)


def build_from_command_line(name: str, pairs: list[str] | None, device: str = "cpu") -> Method:
    """The method ``--method NAME --method-arg K=V ...`` names, with checked options."""
    cls = method_class(name)
    return cls(device=device, **method_options(cls, parse_options(pairs)))
