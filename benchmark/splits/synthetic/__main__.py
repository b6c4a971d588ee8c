"""``python -m benchmark.splits.synthetic``: render synthetic splits into the cache, or save a strip
of frames to look at."""

from __future__ import annotations

import argparse

from ...files import CACHE_ENV
from .cache import ensure_split
from .spec import SPLITS
from .strip import save_strip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.splits.synthetic", description="Render synthetic splits into the cache, or save a strip of frames to look at.")
    parser.add_argument("splits", nargs="*", metavar="SPLIT", help=f"splits to render into the cache: {', '.join(sorted(SPLITS))}")
    parser.add_argument("--cache-dir", help=f"cache folder (default: ${CACHE_ENV} or ~/.cache/everanimate-bench)")
    parser.add_argument("--strip", metavar="PNG", help="save frames and pose frames of the test split's clips")
    args = parser.parse_args(argv)
    for name in args.splits:
        if name not in SPLITS:
            parser.error(f"unknown split {name!r}: one of {', '.join(sorted(SPLITS))}")
    for name in args.splits:
        split = ensure_split(name, cache_dir=args.cache_dir)
        print(f"{name}: {len(split.clips)} clips in {split.root} (content hash {split.content_hash})")
    if args.strip:
        print(f"saved {save_strip(args.strip)}")


if __name__ == "__main__":
    main()
