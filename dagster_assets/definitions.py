"""The shipped ``Definitions``, configured by environment variables.

Load them with ``dagster dev`` (the repository's pyproject names this module),
``dagster dev -m dicomscrub.dagster_assets.definitions`` from anywhere, or
``dagster asset materialize -m dicomscrub.dagster_assets.definitions ...``.

==================================  ============================================
Environment variable                Default
==================================  ============================================
``DICOMSCRUB_SECRET``               required at run time (read through EnvVar)
``DICOMSCRUB_DATA``                 ``./dicomscrub-data`` (base of the defaults)
``DICOMSCRUB_INPUT``                ``$DICOMSCRUB_DATA/input``; empty: use an
                                    existing manifest
``DICOMSCRUB_MANIFEST``             ``$DICOMSCRUB_DATA/manifest.parquet``
``DICOMSCRUB_OUTPUT``               ``$DICOMSCRUB_DATA/output``
``DICOMSCRUB_AUDIT``                ``$DICOMSCRUB_DATA/audit``
``DICOMSCRUB_POLICY``               ``default``
``DICOMSCRUB_PARTITION_BY``         ``study``
``DICOMSCRUB_WORKERS``              ``1``
``DICOMSCRUB_MAX_FAILED_FRACTION``  ``0``
``DICOMSCRUB_PREVIEW``              ``redacted`` (``before_after`` shows the
                                    original pixels too; ``off``)
``DICOMSCRUB_PARTITIONS``           ``dynamic`` (or ``static``: keys read from
                                    the manifest when the definitions load)
==================================  ============================================

Dagster itself keeps runs, events and dynamic partitions in ``DAGSTER_HOME``
(SQLite by default).

Examples
--------
>>> defs = build_definitions(resource_from_env({"DICOMSCRUB_DATA": "/srv/deid"}))
>>> defs.resources["dicomscrub"].output_root
'/srv/deid/output'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    PartitionsDefinition,
    define_asset_job,
    in_process_executor,
)

from dicomscrub.core.errors import ConfigurationError

from .assets import DEIDENTIFIED, build_assets
from .checks import build_checks
from .partitions import DICOM_PARTITIONS, static_partitions_from_manifest
from .resource import DicomScrubResource

SECRET_ENV = "DICOMSCRUB_SECRET"
RESOURCE_KEY = "dicomscrub"
PARTITION_JOB = "dicomscrub_partition_job"


def resource_from_env(environ: Mapping[str, str] | None = None) -> DicomScrubResource:
    """Return the resource configured from ``DICOMSCRUB_*`` variables (see the module doc).

    The secret is bound as ``EnvVar("DICOMSCRUB_SECRET")``: it is read when a
    run starts, on the worker, and never stored with the definitions.
    """
    env = os.environ if environ is None else environ
    base = env.get("DICOMSCRUB_DATA") or "dicomscrub-data"
    if "://" not in base:
        base = str(Path(base).resolve())
    base = base.rstrip("/")
    raw_input = env.get("DICOMSCRUB_INPUT")
    return DicomScrubResource(
        secret=EnvVar(SECRET_ENV),
        input=f"{base}/input" if raw_input is None else (raw_input or None),
        manifest=env.get("DICOMSCRUB_MANIFEST") or f"{base}/manifest.parquet",
        output_root=env.get("DICOMSCRUB_OUTPUT") or f"{base}/output",
        audit_root=env.get("DICOMSCRUB_AUDIT") or f"{base}/audit",
        policy=env.get("DICOMSCRUB_POLICY") or "default",
        partition_by=env.get("DICOMSCRUB_PARTITION_BY") or "study",
        workers=int(_number(env, "DICOMSCRUB_WORKERS", 1)),
        max_failed_fraction=_number(env, "DICOMSCRUB_MAX_FAILED_FRACTION", 0.0),
        file_timeout=_number(env, "DICOMSCRUB_FILE_TIMEOUT", 600.0),
        preview=_choice(env, "DICOMSCRUB_PREVIEW", ("redacted", "before_after", "off")),
    )


def build_definitions(
    resource: DicomScrubResource, partitions_def: PartitionsDefinition = DICOM_PARTITIONS
) -> Definitions:
    """Return the dicomscrub assets, checks, a per-partition job and the resource.

    Runs use the in-process executor: the de-identification step starts its own
    worker processes (``resource.workers``), and partitions run as separate runs.

    Parameters
    ----------
    resource
        The configured :class:`DicomScrubResource`.
    partitions_def
        Dynamic partitions (default) or a fixed definition from
        :func:`static_partitions_from_manifest`.
    """
    assets = build_assets(partitions_def)
    checks = build_checks(partitions_def)
    job = define_asset_job(
        PARTITION_JOB,
        selection=AssetSelection.assets(DEIDENTIFIED).downstream(),
        description="De-identify one manifest partition, check it, publish its audit.",
    )
    return Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[job],
        resources={RESOURCE_KEY: resource},
        # A run's steps are one heavy step (run_partition, with its own worker processes)
        # and a few light ones: run them in one process instead of one process per step.
        # Parallelism comes from running partitions as separate runs.
        executor=in_process_executor,
    )


def definitions_from_env(environ: Mapping[str, str] | None = None) -> Definitions:
    """Return the definitions configured from the environment (what ``dagster dev`` loads)."""
    env = os.environ if environ is None else environ
    resource = resource_from_env(env)
    mode = (env.get("DICOMSCRUB_PARTITIONS") or "dynamic").lower()
    if mode == "dynamic":
        return build_definitions(resource)
    if mode == "static":
        return build_definitions(resource, static_partitions_from_manifest(resource.manifest))
    raise ConfigurationError("DICOMSCRUB_PARTITIONS must be 'dynamic' or 'static'")


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> Any:
    value = env.get(name) or allowed[0]
    if value not in allowed:
        raise ConfigurationError(f"{name} must be one of {', '.join(allowed)}")
    return value


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number") from None
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative")
    return value


defs = definitions_from_env()
