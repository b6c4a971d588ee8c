"""What the notebooks in ``notebooks/`` share: their parameters and the folder they run in.

Each notebook's first code cell (tagged ``parameters``) sets its defaults; ``EVERANIMATE_NB_PARAMS``, a
JSON object, overrides them, and a name the notebook does not take is an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

#: The checkout this package belongs to: relative paths in the notebooks resolve from here.
ROOT = Path(__file__).resolve().parents[1]


def apply_parameters(namespace: dict[str, Any], names: Iterable[str]) -> None:
    """Override the notebook's parameters in ``namespace`` (its ``globals()``) from
    ``EVERANIMATE_NB_PARAMS``, then run from the repository root."""
    names = tuple(names)
    given = json.loads(os.environ.get("EVERANIMATE_NB_PARAMS") or "{}")
    if not isinstance(given, dict):
        raise TypeError("EVERANIMATE_NB_PARAMS must be a JSON object of parameter names and values")
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"EVERANIMATE_NB_PARAMS: unknown parameter(s) {', '.join(unknown)}; this notebook takes {', '.join(names)}")
    namespace.update(given)
    os.chdir(ROOT)
