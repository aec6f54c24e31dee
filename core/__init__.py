"""dicomscrub.core: the de-identification engine.

No Airflow or Dagster import, ever: the orchestrator wrappers import this
package, never the other way round.

The public names are loaded lazily so that ``import dicomscrub.core`` stays
cheap (spaCy and the image codecs load only when an engine needs them).

Examples
--------
>>> from dicomscrub.core import Policy
>>> Policy().pixels.mode
'phi'
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("dicomscrub")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

# public name -> module that defines it
_EXPORTS = {
    "ConfigurationError": "errors",
    "DeidError": "errors",
    "ErrorCode": "errors",
    "Entity": "results",
    "FileResult": "results",
    "Policy": "policy",
    "Engine": "pipeline",
    "PartitionResult": "runner",
    "run_partition": "runner",
    "build_manifest": "manifest",
    "read_manifest": "manifest",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
