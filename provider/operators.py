"""Airflow operators: list a manifest's partitions, then de-identify one partition per task.

Typical use (the example DAG ``example_dags/dicom_deid.py`` is the full version)::

    partitions = DicomManifestOperator(
        task_id="manifest", input="s3://raw/dicom", manifest="s3://deid/audit/manifest.parquet"
    )
    DicomRedactOperator.partial(
        task_id="redact",
        manifest="s3://deid/audit/manifest.parquet",
        output_root="s3://deid/output",
        audit_root="s3://deid/audit",
    ).expand(partition=partitions.output)

Each mapped task instance is named after its partition key in the UI
(``map_index_template``), returns a small JSON-safe summary as XCom, emits Asset events
for the output and audit roots with the counts in ``extra``, and fails when the partition's
failed-file fraction exceeds ``max_failed_fraction`` (after its audit is written).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from airflow.sdk import Asset, AssetAlias, BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from dicomscrub.core.errors import ConfigurationError

from .hooks import DicomScrubHook

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

#: The asset alias the redaction tasks emit their events through by default. Each event
#: resolves to a concrete Asset: the output root and the audit root of the run.
ASSET_ALIAS = AssetAlias(name="dicomscrub")

#: Names each mapped task instance after its partition key in the UI.
MAP_INDEX_TEMPLATE = "{{ task.partition }}"


def storage_uri(path: str) -> str:
    """Return ``path`` as a URI: fsspec URLs unchanged, local paths as absolute ``file://``.

    Examples
    --------
    >>> storage_uri("s3://bucket/deid/output/")
    's3://bucket/deid/output'
    >>> storage_uri("/data/deid/audit")
    'file:///data/deid/audit'
    """
    if "://" in path:
        return path.rstrip("/")
    return "file://" + os.path.abspath(os.path.expanduser(path))


def asset_for(path: str) -> Asset:
    """Return the Airflow Asset for a storage location (a local path or an fsspec URL).

    Examples
    --------
    >>> asset_for("s3://bucket/deid/output").uri
    's3://bucket/deid/output'
    """
    return Asset(uri=storage_uri(path))


def list_partitions(
    manifest: str,
    *,
    secret: str | None = None,
    partition_by: str = "study",
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Return the sorted partition keys of a manifest (CSV or Parquet, local path or URL).

    This is what ``DicomRedactOperator.partial(...).expand(partition=...)`` maps over.
    Rejected rows (files that are not usable DICOM) belong to no partition. When the
    manifest has no ``partition`` column, keys are derived with ``partition_by`` and keyed
    with ``secret``: pass the same secret the redaction tasks use.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> from pydicom.data import get_testdata_file
    >>> manifest = tempfile.mkdtemp() + "/manifest.csv"
    >>> pd.DataFrame({"path": [get_testdata_file("CT_small.dcm")], "partition": ["batch-1"]}
    ...              ).to_csv(manifest, index=False)
    >>> list_partitions(manifest, secret="doctest-secret")
    ['batch-1']
    """
    from dicomscrub.core.manifest import partition_keys, read_manifest

    frame = read_manifest(
        manifest, partition_by=partition_by, secret=secret, storage_options=storage_options
    )
    return partition_keys(frame)


def _fraction(value: float | str) -> float:
    """Return a failure budget as a float in [0, 1] (templated values may be strings)."""
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        raise AirflowFailException("max_failed_fraction must be a number") from None
    if not 0.0 <= fraction <= 1.0:
        raise AirflowFailException("max_failed_fraction must be between 0 and 1")
    return fraction


class DicomManifestOperator(BaseOperator):
    """Build (or read) a study manifest and return its partition keys as XCom.

    With ``input`` set, scans that folder or URL (headers only) with
    :func:`dicomscrub.core.build_manifest` and writes the manifest to ``manifest``
    (Parquet, or CSV when the name ends in ``.csv``), replacing an earlier one. Without
    ``input``, reads the existing manifest at ``manifest`` (a user's own CSV/Parquet
    with a ``path`` column works too). Either way the task returns the sorted list of
    partition keys, ready for ``.expand(partition=...)``.

    Parameters
    ----------
    manifest
        Where the manifest is (or is written to). Templated.
    input
        Folder or fsspec URL of the DICOM files to scan, or ``None`` to read an existing
        manifest. Templated.
    partition_by
        ``study`` (default), ``patient``, ``study-date``, ``hash:N`` or a column name; see
        ``dicomscrub manifest build --help``. ``hash:N`` bounds the number of partitions
        (and so of mapped tasks) at ``N``. Templated.
    workers
        Parallel header readers while scanning.
    dicomscrub_conn_id
        The connection holding the secret that keys the partition names (the same one
        the redaction tasks use).
    storage_options
        fsspec options for object storage (no secrets here: use the storage's own
        credential chain or an Airflow connection). Templated.

    Examples
    --------
    >>> op = DicomManifestOperator(task_id="manifest", input="/data/in",
    ...                            manifest="/data/audit/manifest.parquet")
    >>> op.template_fields
    ('manifest', 'input', 'partition_by', 'storage_options')
    """

    template_fields: Sequence[str] = ("manifest", "input", "partition_by", "storage_options")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        manifest: str,
        input: str | None = None,
        partition_by: str = "study",
        workers: int = 4,
        dicomscrub_conn_id: str = DicomScrubHook.default_conn_name,
        storage_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifest = manifest
        self.input = input
        self.partition_by = partition_by
        self.workers = workers
        self.dicomscrub_conn_id = dicomscrub_conn_id
        self.storage_options = storage_options

    def execute(self, context: Context) -> list[str]:
        """Build or read the manifest and return its partition keys."""
        from dicomscrub.core.manifest import build_manifest, partition_keys, write_manifest

        try:
            secret = DicomScrubHook(self.dicomscrub_conn_id).get_secret()
            if self.input:
                frame = build_manifest(
                    self.input,
                    partition_by=self.partition_by,
                    workers=self.workers,
                    storage_options=self.storage_options,
                    secret=secret,
                )
                write_manifest(frame, self.manifest, storage_options=self.storage_options)
                rejected = int((frame["reject_reason"].fillna("") != "").sum())
                self.log.info(
                    "Wrote a manifest of %d files (%d rejected as unusable)", len(frame), rejected
                )
                keys = partition_keys(frame)
            else:
                keys = list_partitions(
                    self.manifest,
                    secret=secret,
                    partition_by=self.partition_by,
                    storage_options=self.storage_options,
                )
        except ConfigurationError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("The manifest has %d partitions", len(keys))
        return keys


class DicomRedactOperator(BaseOperator):
    """De-identify one partition of a manifest with :func:`dicomscrub.core.run_partition`.

    The secret comes from the ``dicomscrub`` connection, read in :meth:`execute` through
    :class:`~dicomscrub.provider.hooks.DicomScrubHook`: it is not a template field, so
    it never appears in rendered templates, XCom or lineage, and Airflow's secrets masker
    redacts it from the logs. Nothing is read or written in ``__init__``.

    Parameters
    ----------
    manifest
        The manifest (CSV or Parquet; local path or fsspec URL). Templated.
    partition
        The partition key to process; map over keys with ``.expand(partition=...)``.
        Templated.
    output_root, audit_root
        Where de-identified files and the Parquet audit go (local paths or fsspec URLs).
        Templated.
    policy
        A built-in policy name, a path to a YAML policy, a dict, or ``None`` for the
        default policy. Templated (render the DAG with ``render_template_as_native_obj``
        to pass a dict param through).
    dicomscrub_conn_id
        The connection holding the pseudonymization secret.
    workers
        Worker processes for this partition.
    max_failed_fraction
        Failure budget: the task fails when more than this fraction of the partition's
        files failed (0.0, the default, fails on any failed file). The audit is always
        written first. Templated (a number, or a string holding one).
    resume
        Skip files whose source hash and policy hash already succeeded.
    file_timeout
        With ``workers`` > 1: seconds a file may run; one that hangs longer, also when
        retried alone, fails with ``worker_timeout`` and the partition goes on.
    storage_options
        fsspec options for object storage. Templated.
    map_index_template
        How mapped instances are named in the UI; by default the partition key.
    outlets
        Assets or asset aliases to emit events for. By default the alias
        :data:`ASSET_ALIAS`, resolved at run time to the output root and the audit root.
        An :class:`~airflow.sdk.Asset` given here gets the counts in its event's extra.

    Examples
    --------
    >>> op = DicomRedactOperator(task_id="redact", manifest="m.parquet", partition="s-1",
    ...                          output_root="/out", audit_root="/audit")
    >>> op.template_fields[:4]
    ('manifest', 'partition', 'output_root', 'audit_root')
    >>> op.map_index_template
    '{{ task.partition }}'
    """

    template_fields: Sequence[str] = (
        "manifest",
        "partition",
        "output_root",
        "audit_root",
        "policy",
        "max_failed_fraction",
        "storage_options",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "policy": "json",
        "storage_options": "json",
    }
    ui_color = "#d6f5e3"

    def __init__(
        self,
        *,
        manifest: str,
        partition: str,
        output_root: str,
        audit_root: str,
        policy: str | dict[str, Any] | None = None,
        dicomscrub_conn_id: str = DicomScrubHook.default_conn_name,
        workers: int = 1,
        max_failed_fraction: float | str = 0.0,
        resume: bool = False,
        file_timeout: float = 600.0,
        storage_options: dict[str, Any] | None = None,
        map_index_template: str | None = MAP_INDEX_TEMPLATE,
        outlets: Any | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            map_index_template=map_index_template,
            outlets=[ASSET_ALIAS] if outlets is None else outlets,
            **kwargs,
        )
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if file_timeout <= 0:
            raise ValueError("file_timeout must be positive")
        self.manifest = manifest
        self.partition = partition
        self.output_root = output_root
        self.audit_root = audit_root
        self.policy = policy
        self.dicomscrub_conn_id = dicomscrub_conn_id
        self.workers = workers
        self.max_failed_fraction = max_failed_fraction
        self.resume = resume
        self.file_timeout = file_timeout
        self.storage_options = storage_options
        self._summary: dict[str, Any] | None = None

    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:
        """Like :meth:`BaseOperator.partial`, with the default outlets filled in.

        Mapped tasks take their outlets from the partial arguments (before ``__init__``
        runs), so the default asset alias is set here too.
        """
        if kwargs.get("outlets") is None:
            kwargs["outlets"] = [ASSET_ALIAS]
        return super().partial(**kwargs)

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the partition; return its summary; fail when over the failure budget."""
        from dicomscrub.core.runner import PartitionFailedError, run_partition

        budget = _fraction(self.max_failed_fraction)
        try:
            secret = DicomScrubHook(self.dicomscrub_conn_id).get_secret()
            result = run_partition(
                self.manifest,
                self.partition,
                self.output_root,
                self.audit_root,
                policy=self.policy or None,
                secret=secret,
                workers=self.workers,
                max_failed_fraction=budget,
                resume=self.resume,
                storage_options=self.storage_options,
                file_timeout=self.file_timeout,
            )
        except ConfigurationError as exc:
            # Wrong settings do not get better with a retry.
            raise AirflowFailException(str(exc)) from None
        summary = result.to_summary()
        self._summary = summary
        self.log.info(
            "Partition %s: %d files, %s; entities by type %s; %.1f s",
            self.partition,
            result.files,
            summary["counts"],
            summary["entities_by_type"],
            result.seconds,
        )
        try:
            result.raise_for_budget()  # after the audit: run_partition committed it
        except PartitionFailedError as exc:
            raise AirflowException(str(exc)) from None
        self._emit_asset_events(context, summary)
        return summary

    def _emit_asset_events(self, context: Context, summary: dict[str, Any]) -> None:
        """Attach the partition's counts to an event for each outlet (no paths of sources)."""
        extra: dict[str, Any] = {
            key: summary[key]
            for key in (
                "partition",
                "files",
                "counts",
                "entities_by_type",
                "error_codes",
                "output",
                "policy_hash",
                "run_id",
            )
        }
        outlet_events = context["outlet_events"]
        for outlet in self.outlets:
            if isinstance(outlet, AssetAlias):
                for root in (self.output_root, self.audit_root):
                    outlet_events[outlet].add(asset_for(root), extra=extra)
            elif isinstance(outlet, Asset):
                outlet_events[outlet].extra.update(extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        """Name the manifest as input and the output and audit roots as outputs."""
        from airflow.providers.common.compat.openlineage.facet import (
            Dataset,
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage

        def dataset_name(path: str) -> tuple[str, str]:
            uri = urlsplit(storage_uri(path))
            if uri.scheme == "file":
                return "file", uri.path
            return f"{uri.scheme}://{uri.netloc}", uri.path.lstrip("/")

        counts = (self._summary or {}).get("counts", {})
        written = counts.get("ok") if isinstance(counts, dict) else None
        output_facets: dict[str, Any] = (
            {"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=int(written))}
            if isinstance(written, int)
            else {}
        )
        return OperatorLineage(
            inputs=[Dataset(*dataset_name(self.manifest))],
            outputs=[
                OutputDataset(*dataset_name(self.output_root), outputFacets=output_facets),
                OutputDataset(*dataset_name(self.audit_root)),
            ],
        )
