"""Where the metric networks' pretrained weights come from, and how to get them.

Each network loads through its library's usual cache (torch hub for the LPIPS backbones and
pytorch-fid's Inception, the Hugging Face cache for VideoMAE, ``~/.insightface`` for ArcFace), so a
machine with network access downloads it once with ``python -m benchmark.weights fetch NAME``. A
local file or folder can be given instead, per network (``EVERANIMATE_BENCH_INCEPTION=...``) or as
one folder holding the expected file names (``EVERANIMATE_BENCH_WEIGHTS=DIR``).

Locating weights only checks that files exist: an evaluation never starts a download unless asked
(``allow_download``, or ``EVERANIMATE_BENCH_DOWNLOAD=1``), so an offline run learns in milliseconds
that a metric is unavailable instead of hanging on a connection.

``python -m benchmark.weights`` lists every network, its expected file and whether it is present;
``python -m benchmark.weights fetch NAME [--dir DIR]`` downloads it.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import torch

ENV_PREFIX = "EVERANIMATE_BENCH_"
WEIGHTS_DIR_ENV = "EVERANIMATE_BENCH_WEIGHTS"
DOWNLOAD_ENV = "EVERANIMATE_BENCH_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class NetworkSpec:
    """One pretrained network: what uses it, where it comes from, which file proves it is present."""

    name: str
    used_by: str
    kind: str  # "torch-hub" (one state-dict file), "huggingface" (a model folder), "insightface" (a model pack)
    filename: str  # torch-hub: the file; huggingface: the repo id; insightface: the pack folder
    url: str
    required_file: str = ""  # inside the folder, for "huggingface" and "insightface"
    extra: str = "metrics"  # the pyproject extra that installs the loading library


NETWORKS: dict[str, NetworkSpec] = {
    spec.name: spec
    for spec in (
        NetworkSpec(
            "lpips_alex", "lpips (default)", "torch-hub", "alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
        ),
        NetworkSpec("lpips_vgg", "lpips (net=vgg)", "torch-hub", "vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
        NetworkSpec(
            "inception",
            "fid",
            "torch-hub",
            "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        ),
        NetworkSpec(
            "videomae",
            "vmae, fvd_videomae",
            "huggingface",
            "MCG-NJU/videomae-base",
            "https://huggingface.co/MCG-NJU/videomae-base",
            required_file="config.json",
        ),
        NetworkSpec(
            "arcface",
            "identity",
            "insightface",
            "buffalo_l",
            "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
            required_file="w600k_r50.onnx",
            extra="face",
        ),
    )
}

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class WeightsLocation:
    """Where a network's weights were found (``path``), or why they were not (``missing``)."""

    name: str
    path: Path | None
    source: str
    missing: str | None = None

    @property
    def present(self) -> bool:
        return self.path is not None


@dataclass
class WeightsConfig:
    """Per-network local weights (file or folder, None = use the library cache) and policy.

    ``random_init`` builds seeded random networks where weights are missing. It exists for tests
    and performance measurements only: results say so and are not comparable.
    """

    lpips_alex: str | None = None
    lpips_vgg: str | None = None
    inception: str | None = None
    videomae: str | None = None
    arcface: str | None = None
    weights_dir: str | None = None
    allow_download: bool = False
    random_init: bool = False

    @classmethod
    def from_env(cls, weights_dir: str | None = None) -> "WeightsConfig":
        """Read ``EVERANIMATE_BENCH_<NETWORK>`` paths, ``EVERANIMATE_BENCH_WEIGHTS`` (overridden by
        ``weights_dir``) and ``EVERANIMATE_BENCH_DOWNLOAD=1``."""
        paths = {name: os.environ.get(env_var(name)) or None for name in NETWORKS}
        return cls(
            **paths,
            weights_dir=weights_dir or os.environ.get(WEIGHTS_DIR_ENV) or None,
            allow_download=os.environ.get(DOWNLOAD_ENV, "") in ("1", "true", "yes"),
        )

    def explicit_path(self, name: str) -> str | None:
        return getattr(self, name)

    def locate(self, name: str) -> WeightsLocation:
        """Find ``name``'s weights on disk without touching the network."""
        spec = NETWORKS[name]
        explicit = self.explicit_path(name)
        if explicit:
            path = _resolve_in(Path(explicit).expanduser(), spec)
            if path is None:
                return WeightsLocation(name, None, "explicit", f"{env_var(name)}={explicit} does not hold {_expected(spec)}")
            return WeightsLocation(name, path, env_var(name))
        if self.weights_dir:
            path = _resolve_in(Path(self.weights_dir).expanduser(), spec)
            if path is not None:
                return WeightsLocation(name, path, WEIGHTS_DIR_ENV)
        cached = _library_cache(spec)
        if cached is not None:
            return WeightsLocation(name, cached, "library cache")
        looked = ([self.weights_dir] if self.weights_dir else []) + [_cache_description(spec)]
        return WeightsLocation(name, None, "", f"looked in {', '.join(looked)}")

    def how_to_fix(self, name: str) -> str:
        spec = NETWORKS[name]
        return (
            f"run `python -m benchmark.weights fetch {name}` where there is network access, "
            f"or set {env_var(name)}=/path/{_expected(spec)} (or {WEIGHTS_DIR_ENV}=DIR holding it)"
        )

    def describe(self) -> dict:
        """JSON-friendly summary (paths and policy), recorded with results."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _expected(spec: NetworkSpec) -> str:
    if spec.kind == "torch-hub":
        return spec.filename
    folder = spec.filename.split("/")[-1]
    return f"{folder}/ (with {spec.required_file})"


def _resolve_in(path: Path, spec: NetworkSpec) -> Path | None:
    """A file for torch-hub networks, a folder otherwise; ``path`` may be the item or its parent."""
    if spec.kind == "torch-hub":
        if path.is_file():
            return path
        inside = path / spec.filename
        return inside if inside.is_file() else None
    if path.is_file() and path.name == spec.required_file:
        return path.parent
    folder = spec.filename.split("/")[-1]
    for candidate in (path, path / folder):
        if (candidate / spec.required_file).is_file():
            if spec.kind == "huggingface" and not any((candidate / f).is_file() for f in HF_WEIGHT_FILES):
                continue
            return candidate
    return None


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _insightface_root() -> Path:
    return Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser() / "models"


def _cache_description(spec: NetworkSpec) -> str:
    if spec.kind == "torch-hub":
        return str(_hub_checkpoints())
    if spec.kind == "huggingface":
        return f"the Hugging Face cache ({spec.filename})"
    return str(_insightface_root())


def _library_cache(spec: NetworkSpec) -> Path | None:
    if spec.kind == "torch-hub":
        path = _hub_checkpoints() / spec.filename
        return path if path.is_file() else None
    if spec.kind == "huggingface":
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        config = try_to_load_from_cache(spec.filename, spec.required_file)
        if not isinstance(config, str):
            return None
        return _resolve_in(Path(config).parent, spec)
    return _resolve_in(_insightface_root(), spec)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain tensor state dict (``weights_only``: no pickled code runs)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def fetch(name: str, directory: str | None = None) -> Path:
    """Download ``name``'s weights into the library cache, or into ``directory``. Raises
    ``RuntimeError`` naming the URL when the download fails (e.g. no network)."""
    spec = NETWORKS[name]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        if spec.kind == "torch-hub":
            target_dir = Path(directory).expanduser() if directory else _hub_checkpoints()
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / spec.filename
            if not target.is_file():
                torch.hub.download_url_to_file(spec.url, str(target), progress=True)
            return target
        if spec.kind == "huggingface":
            from huggingface_hub import snapshot_download

            local_dir = str(Path(directory).expanduser() / spec.filename.split("/")[-1]) if directory else None
            patterns = ["*.json", *HF_WEIGHT_FILES]
            return Path(snapshot_download(spec.filename, local_dir=local_dir, allow_patterns=patterns))
        try:
            from insightface.utils.storage import ensure_available
        except ImportError as exc:
            raise RuntimeError(f"insightface is not installed: pip install 'everanimate-bench[{spec.extra}]'") from exc
        root = Path(directory).expanduser() if directory else _insightface_root().parent
        return Path(ensure_available("models", spec.filename, root=str(root)))
    except RuntimeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any download failure becomes one clear message
        raise RuntimeError(f"could not download {name} from {spec.url}: {type(exc).__name__}: {exc}") from exc
    finally:
        socket.setdefaulttimeout(previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.weights",
        description="List the metric networks (LPIPS backbones, Inception for FID, VideoMAE, ArcFace), the weights file each "
        "expects and whether it is present; `fetch NAME` downloads it through the library's usual cache where there is a network. "
        "A metric whose weights are missing is reported as unavailable, with this fix, never as 0.",
        epilog=f"Local weights: set {WEIGHTS_DIR_ENV}=DIR (a folder holding the expected files) or {ENV_PREFIX}<NETWORK>=PATH per network, "
        "or pass --weights-dir to benchmark.run / benchmark.evaluate.",
    )
    sub = parser.add_subparsers(dest="command")
    get = sub.add_parser("fetch", help="download weights (needs network access)")
    get.add_argument("name", choices=[*NETWORKS, "all"])
    get.add_argument("--dir", help=f"download into this folder (then set {WEIGHTS_DIR_ENV}) instead of the library cache")
    args = parser.parse_args(argv)
    config = WeightsConfig.from_env()
    if args.command == "fetch":
        names = list(NETWORKS) if args.name == "all" else [args.name]
        failed = 0
        for name in names:
            try:
                print(f"{name}: {fetch(name, args.dir)}")
            except RuntimeError as exc:
                print(f"{name}: FAILED: {exc}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    print(f"{'network':<11} {'used by':<20} {'expected':<40} status")
    for name, spec in NETWORKS.items():
        location = config.locate(name)
        status = f"present: {location.path} ({location.source})" if location.present else f"MISSING: {location.missing}"
        print(f"{name:<11} {spec.used_by:<20} {_expected(spec):<40} {status}")
    print(f"\nSet {WEIGHTS_DIR_ENV}=DIR or {ENV_PREFIX}<NETWORK>=PATH for local weights; `fetch NAME` downloads.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
