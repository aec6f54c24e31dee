"""Partitions: one Dagster partition per manifest partition key.

The default is :data:`DICOM_PARTITIONS`, a dynamic partitions definition: the
manifest asset registers the keys it finds, so new studies become new
partitions without a code change. For a manifest that never changes,
:func:`static_partitions_from_manifest` reads the keys once, when the
definitions load.

Limits: Dagster recommends at most about 100,000 partitions per asset (the UI
and the partition status cache slow down beyond that), and every dynamic key
is a row in the instance database. One partition per study suits up to tens of
thousands of studies; beyond that, group whole studies into buckets with the
manifest's ``hash:N`` or ``study-date`` partitioning (a study never spans two
partitions either way).

Examples
--------
>>> DICOM_PARTITIONS.name
'dicomscrub_partitions'
"""

from __future__ import annotations

from typing import Any

from dagster import DynamicPartitionsDefinition, StaticPartitionsDefinition

PARTITIONS_NAME = "dicomscrub_partitions"

DICOM_PARTITIONS = DynamicPartitionsDefinition(name=PARTITIONS_NAME)
"""The dynamic partitions the manifest asset fills."""


def static_partitions_from_manifest(
    manifest: str, *, storage_options: dict[str, Any] | None = None
) -> StaticPartitionsDefinition:
    """Return fixed partitions holding the partition keys of a manifest.

    The manifest is read when the definitions load (so keep it small and
    reachable from every code server).

    Parameters
    ----------
    manifest
        Manifest path or fsspec URL (.parquet or .csv).
    storage_options
        fsspec options for remote manifests.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "manifest.csv")
    >>> pd.DataFrame({"path": ["a.dcm", "b.dcm"], "partition": ["p2", "p1"]}).to_csv(path)
    >>> static_partitions_from_manifest(path).get_partition_keys()
    ['p1', 'p2']
    """
    from dicomscrub.core.manifest import partition_keys, read_manifest

    frame = read_manifest(manifest, storage_options=storage_options, scan_missing=False)
    return StaticPartitionsDefinition(partition_keys(frame))
