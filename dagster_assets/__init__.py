"""dicomscrub.dagster_assets: de-identify DICOM manifests as partitioned Dagster assets.

A thin layer over :mod:`dicomscrub.core`: :class:`DicomScrubResource` holds the
settings (the secret through ``EnvVar``), :func:`build_assets` and
:func:`build_checks` make the asset graph over dynamic (or fixed) partitions,
and :mod:`dicomscrub.dagster_assets.definitions` ships ``Definitions``
configured by environment variables, for ``dagster dev`` and
``dagster asset materialize``.

Importing this package does not load the shipped definitions (they read the
environment); import ``dicomscrub.dagster_assets.definitions`` for those.

Examples
--------
>>> from dicomscrub.dagster_assets import DICOM_PARTITIONS, build_assets
>>> len(build_assets(DICOM_PARTITIONS))
4
"""

from __future__ import annotations

from .assets import AUDIT_ENTITIES, AUDIT_FILES, DEIDENTIFIED, MANIFEST, build_assets
from .checks import build_checks
from .partitions import DICOM_PARTITIONS, PARTITIONS_NAME, static_partitions_from_manifest
from .resource import DicomScrubResource

__all__ = [
    "AUDIT_ENTITIES",
    "AUDIT_FILES",
    "DEIDENTIFIED",
    "DICOM_PARTITIONS",
    "MANIFEST",
    "PARTITIONS_NAME",
    "DicomScrubResource",
    "build_assets",
    "build_checks",
    "static_partitions_from_manifest",
]
