"""The Parquet audit: a ``files`` table and an ``entities`` table per partition.

Layout under ``audit_root`` (a path or fsspec URL), hive-partitioned by the
manifest partition key, one Parquet file per partition and table::

    <audit_root>/files/partition=<key>/part-0.parquet
    <audit_root>/entities/partition=<key>/part-0.parquet

``pandas.read_parquet(f"{audit_root}/files")`` reads every partition directly
and adds the ``partition`` column from the folder names. Each table has an
explicit, versioned schema (:data:`FILES_SCHEMA`, :data:`ENTITIES_SCHEMA`):
every row carries ``schema_version`` and the file metadata holds
``dicomscrub.audit.schema_version``. A new column bumps the version; readers
should select the columns they need.

A partition's files are written under hidden temporary names while the run
streams rows into them (memory does not grow with the partition). The commit
(:meth:`PartitionAuditWriter.commit`) then

1. finishes both temporaries (flushed to disk with ``fsync`` when local),
2. renames ``entities`` over its ``part-0.parquet``, then, straight after,
   ``files`` over its own (``os.replace`` locally, a server-side copy on object
   stores: each replace is atomic, the two together are not),
3. removes leftovers of killed runs (hidden names: readers never see them).

So each table is always either its previous complete version or its new one,
never half. ``files`` is the commit record: once it shows a run, ``entities``
already holds that run's rows. The one mixed state a reader can see is the new
``entities`` with the previous ``files``: between the two renames (microseconds
locally, one object copy on object stores), or, if the process dies exactly
there, until the partition is run again. Both files carry the run's id in their
Parquet footer (``dicomscrub.audit.run_id``, :func:`audit_run_ids`), so a reader
that needs the two tables to match compares them, and :func:`check_partition`
reports a mismatch (``torn_audit``).

No raw PHI ever enters the audit: entity rows come from
:meth:`dicomscrub.core.results.Entity.to_record` (keyed HMACs, safe
replacements) and error messages are PHI-free by contract. The ``source``
column is the input path as given in the manifest: keep the audit with the
same access rules as the sources if your folder names hold patient names.

Examples
--------
>>> FILES_SCHEMA.metadata[b"dicomscrub.audit.schema_version"]
b'1'
>>> "raw_text" in ENTITIES_SCHEMA.names
False
"""

from __future__ import annotations

import datetime as dt
import io
import os
import uuid
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from .errors import ConfigurationError
from .results import FileResult
from .storage import (
    filesystem,
    is_hidden,
    join,
    list_files,
    remove_files,
    replace_file,
    temp_sibling,
    validate_partition_key,
)

__all__ = [
    "ENTITIES_SCHEMA",
    "FILES_SCHEMA",
    "SCHEMA_VERSION",
    "TIMING_STEPS",
    "PartitionAuditWriter",
    "PartitionCheck",
    "audit_run_ids",
    "audit_summary",
    "audit_summary_cli",
    "check_partition",
    "entity_rows",
    "file_row",
    "partition_path",
    "read_audit",
    "read_partition",
]

#: Version of both table schemas; bumped whenever a column is added, renamed or retyped.
SCHEMA_VERSION = 1
#: Steps whose durations are recorded as ``seconds_<step>`` columns in ``files``.
TIMING_STEPS = ("read", "deidentify", "encode", "write", "total")
_PART_FILE = "part-0.parquet"
_TABLES = ("files", "entities")
#: Parquet footer key holding the id of the run that wrote a partition's file.
RUN_ID_KEY = b"dicomscrub.audit.run_id"


def _metadata(table: str) -> dict[bytes, bytes]:
    return {
        b"dicomscrub.audit.schema_version": str(SCHEMA_VERSION).encode(),
        b"dicomscrub.audit.table": table.encode(),
    }


#: ``files``: one row per manifest row of the partition, whatever happened to the file.
FILES_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string()),
        pa.field("source_size", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("output", pa.string()),
        pa.field("output_study_uid", pa.string()),
        pa.field("output_series_uid", pa.string()),
        pa.field("output_sop_uid", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("frames", pa.int32()),
        pa.field("pixels_changed", pa.bool_()),
        pa.field("header_entities", pa.int32()),
        pa.field("pixel_entities", pa.int32()),
        *[pa.field(f"seconds_{step}", pa.float64()) for step in TIMING_STEPS],
        pa.field("policy_hash", pa.string()),
        pa.field("engine_version", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("processed_at", pa.timestamp("us", tz="UTC")),
    ],
    metadata=_metadata("files"),
)

#: ``entities``: one row per detected or acted-on item (``Entity.to_record()`` + ``source``).
ENTITIES_SCHEMA = pa.schema(
    [
        pa.field("schema_version", pa.int16(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("location", pa.string()),
        pa.field("tag", pa.string()),
        pa.field("keyword", pa.string()),
        pa.field("sequence_path", pa.string()),
        pa.field("entity_type", pa.string()),
        pa.field("detector", pa.string()),
        pa.field("action", pa.string()),
        pa.field("confidence", pa.float64()),
        pa.field("replacement", pa.string()),
        pa.field("value_hmac", pa.string()),
        pa.field("frame", pa.int32()),
        pa.field("box", pa.list_(pa.int32())),
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
    ],
    metadata=_metadata("entities"),
)

#: Columns that change from run to run even when nothing else does.
VOLATILE_FILE_COLUMNS = (
    *[f"seconds_{step}" for step in TIMING_STEPS],
    "run_id",
    "processed_at",
)


def partition_path(audit_root: str, table: str, partition: str) -> str:
    """URL of one partition's Parquet file of ``table`` (``files`` or ``entities``).

    Examples
    --------
    >>> partition_path("s3://b/audit", "files", "s-0123")
    's3://b/audit/files/partition=s-0123/part-0.parquet'
    """
    if table not in _TABLES:
        raise ValueError(f"unknown audit table {table!r}")
    validate_partition_key(partition, allow_date_like=True)
    return join(audit_root, table, f"partition={partition}", _PART_FILE)


def file_row(
    result: FileResult,
    *,
    source_size: int | None,
    policy_hash: str,
    engine_version: str,
    run_id: str,
    processed_at: dt.datetime,
) -> dict[str, Any]:
    """The ``files`` row for one :class:`FileResult` (see :data:`FILES_SCHEMA`)."""
    uids = result.uids or {}
    row: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source": result.source,
        "source_sha256": result.source_sha256 or None,
        "source_size": source_size if source_size is not None and source_size >= 0 else None,
        "status": result.status,
        "error_code": result.error_code,
        "error_message": result.error_message,
        "output": result.output,
        "output_study_uid": uids.get("StudyInstanceUID") if result.output else None,
        "output_series_uid": uids.get("SeriesInstanceUID") if result.output else None,
        "output_sop_uid": uids.get("SOPInstanceUID") if result.output else None,
        "modality": result.modality or None,
        "frames": result.frames,
        "pixels_changed": result.pixels_changed,
        "header_entities": result.header_entities,
        "pixel_entities": result.pixel_entities,
        "policy_hash": policy_hash,
        "engine_version": engine_version,
        "run_id": run_id,
        "processed_at": processed_at,
    }
    for step in TIMING_STEPS:
        value = result.timings.get(step)
        row[f"seconds_{step}"] = float(value) if value is not None else None
    return row


# Entity attributes copied into the audit: the schema's columns, so never ``raw_text``.
_ENTITY_FIELDS = tuple(n for n in ENTITIES_SCHEMA.names if n not in ("schema_version", "source"))


def entity_rows(result: FileResult) -> list[dict[str, Any]]:
    """The ``entities`` rows of one :class:`FileResult` (never ``raw_text``).

    Each row equals :meth:`Entity.to_record` restricted to the schema's
    columns, plus ``source`` and ``schema_version`` (read attribute by
    attribute: ``dataclasses.asdict`` costs more than the rest of the audit).
    """
    rows = []
    for entity in result.entities:
        row: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "source": result.source}
        for name in _ENTITY_FIELDS:
            row[name] = getattr(entity, name, None)
        if row["box"] is not None:
            row["box"] = list(row["box"])
        rows.append(row)
    return rows


class _StreamingTable:
    """A Parquet file written row group by row group under a hidden temporary name."""

    def __init__(
        self, fs: Any, final: str, schema: pa.Schema, batch_rows: int, run_id: str
    ) -> None:
        self.fs = fs
        self.final = final
        self.tmp = temp_sibling(final)
        self.schema = schema.with_metadata({**(schema.metadata or {}), RUN_ID_KEY: run_id.encode()})
        self.batch_rows = batch_rows
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        fs.makedirs(final.rpartition("/")[0], exist_ok=True)
        self._handle: IO[bytes] = fs.open(self.tmp, "wb")
        self._writer = pq.ParquetWriter(self._handle, self.schema)

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= self.batch_rows:
            self.flush()

    def add_table(self, table: pa.Table) -> None:
        self.flush()
        if table.num_rows:
            self._writer.write_table(table.select(self.schema.names).cast(self.schema))
            self.count += table.num_rows

    def flush(self) -> None:
        if self.rows:
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.count += len(self.rows)
            self.rows = []

    def close(self) -> None:
        self.flush()
        self._writer.close()
        if isinstance(self.fs, LocalFileSystem):  # on disk before it is renamed into place
            self._handle.flush()
            with suppress(AttributeError, OSError, io.UnsupportedOperation):
                os.fsync(self._handle.fileno())
        self._handle.close()

    def abort(self) -> None:
        try:
            self._writer.close()
            self._handle.close()
        finally:
            remove_files(self.fs, [self.tmp])


class PartitionAuditWriter:
    """Stream one partition's audit rows to temporary files; :meth:`commit` swaps them in.

    Parameters
    ----------
    audit_root
        Root of the audit (path or fsspec URL).
    partition
        The partition key.
    storage_options
        Passed to fsspec.
    batch_rows
        Rows buffered in memory before a row group is written.
    run_id
        Written into both files' Parquet footers (default: a new random id).

    Examples
    --------
    >>> import datetime as dt
    >>> from dicomscrub.core.results import FileResult
    >>> w = PartitionAuditWriter("memory://doctest-audit", "p1")
    >>> r = FileResult(source="/in/a.dcm", status="failed", error_code="not_dicom",
    ...                error_message="not a DICOM file")
    >>> w.add(r, source_size=3, policy_hash="x", engine_version="0", run_id="r",
    ...       processed_at=dt.datetime.now(dt.timezone.utc))
    >>> paths = w.commit()
    >>> read_audit("memory://doctest-audit", "files")[["partition", "status"]].values.tolist()
    [['p1', 'failed']]
    """

    def __init__(
        self,
        audit_root: str,
        partition: str,
        storage_options: dict[str, Any] | None = None,
        *,
        batch_rows: int = 2000,
        run_id: str | None = None,
    ) -> None:
        self.audit_root = audit_root
        self.partition = partition
        self.run_id = run_id or uuid.uuid4().hex
        self.fs = filesystem(audit_root, storage_options)
        self.files = _StreamingTable(
            self.fs,
            partition_path(audit_root, "files", partition),
            FILES_SCHEMA,
            batch_rows,
            self.run_id,
        )
        self.entities = _StreamingTable(
            self.fs,
            partition_path(audit_root, "entities", partition),
            ENTITIES_SCHEMA,
            batch_rows * 4,
            self.run_id,
        )
        self._done = False

    def add(
        self,
        result: FileResult,
        *,
        source_size: int | None,
        policy_hash: str,
        engine_version: str,
        run_id: str,
        processed_at: dt.datetime,
    ) -> None:
        """Append the rows of one file."""
        self.files.add(
            [
                file_row(
                    result,
                    source_size=source_size,
                    policy_hash=policy_hash,
                    engine_version=engine_version,
                    run_id=run_id,
                    processed_at=processed_at,
                )
            ]
        )
        self.entities.add(entity_rows(result))

    def add_row(self, row: dict[str, Any]) -> None:
        """Append a ready ``files`` row (a row carried over by ``resume``)."""
        self.files.add([{name: row.get(name) for name in FILES_SCHEMA.names}])

    def add_entity_table(self, table: pa.Table) -> None:
        """Append entity rows carried over from an earlier audit (``--resume``)."""
        self.entities.add_table(table)

    def commit(self) -> dict[str, str]:
        """Finish both temporaries, then rename ``entities`` and ``files`` into place.

        Everything that can fail or take time (closing, ``fsync``, listing the
        leftovers of killed runs) happens before the first rename, so the two
        renames follow each other directly; ``files`` goes last and is the
        commit record (see the module documentation for the exact guarantee).
        Leftovers are removed afterwards. Returns the two final paths.
        """
        tables = (self.entities, self.files)
        for table in tables:
            table.close()
        stale = [
            p
            for table in tables
            for p in list_files(self.fs, table.final.rpartition("/")[0])
            if p not in (table.final, table.tmp)
        ]
        for table in tables:
            replace_file(self.fs, table.tmp, table.final)
        self._done = True
        remove_files(self.fs, stale)
        return {"files": self.files.final, "entities": self.entities.final}

    def abort(self) -> None:
        """Drop the temporaries; the previous audit of the partition stays as it was."""
        if not self._done:
            for table in (self.entities, self.files):
                table.abort()
            self._done = True


def _partitioning() -> pads.Partitioning:
    return pads.partitioning(pa.schema([("partition", pa.string())]), flavor="hive")


def read_audit(
    audit_root: str,
    table: str,
    *,
    partitions: list[str] | None = None,
    partition: str | None = None,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Read an audit table (``files`` or ``entities``) with the ``partition`` column as text.

    Same as ``pandas.read_parquet(f"{audit_root}/{table}")`` except that
    partition keys made only of digits stay strings, and ``partitions`` (or one
    ``partition``) reads only those partitions' files. Returns an empty frame
    with the right columns when nothing was written yet.
    """
    if table not in _TABLES:
        raise ValueError(f"unknown audit table {table!r}")
    if partition is not None:
        partitions = [*(partitions or []), partition]
    schema = FILES_SCHEMA if table == "files" else ENTITIES_SCHEMA
    fs = filesystem(audit_root, storage_options)
    root = join(audit_root, table)
    if partitions is not None:
        paths = [partition_path(audit_root, table, key) for key in partitions]
        frames = []
        for key, path in zip(partitions, paths, strict=True):
            if fs.exists(path):
                part = _read_file(fs, path, columns)
                part["partition"] = key
                frames.append(part)
        if frames:
            return pd.concat(frames, ignore_index=True)
        return _empty(schema, columns)
    if not fs.exists(root):
        return _empty(schema, columns)
    dataset = pads.dataset(
        fs._strip_protocol(root),
        filesystem=fs,
        format="parquet",
        partitioning=_partitioning(),
        ignore_prefixes=[".", "_"],
    )
    wanted = None if columns is None else [*columns, "partition"]
    frame: pd.DataFrame = dataset.to_table(columns=wanted).to_pandas()
    return frame


def _read_file(fs: Any, path: str, columns: list[str] | None) -> pd.DataFrame:
    with fs.open(path, "rb") as handle:
        frame: pd.DataFrame = pq.read_table(handle, columns=columns).to_pandas()
    return frame


def _empty(schema: pa.Schema, columns: list[str] | None) -> pd.DataFrame:
    frame: pd.DataFrame = schema.empty_table().to_pandas()
    frame["partition"] = pd.Series([], dtype=str)
    return frame if columns is None else frame[[*columns, "partition"]]


def read_partition(
    audit_root: str,
    table: str,
    partition: str,
    *,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame | None:
    """One partition of an audit table, or ``None`` when it was never written."""
    fs = filesystem(audit_root, storage_options)
    path = partition_path(audit_root, table, partition)
    if not fs.exists(path):
        return None
    frame = _read_file(fs, path, None)
    frame["partition"] = partition
    return frame


def audit_run_ids(
    audit_root: str, partition: str, *, storage_options: dict[str, Any] | None = None
) -> dict[str, str | None]:
    """The run id in each table's Parquet footer for one partition (``None``: no file or id).

    The two are equal unless a reader caught a commit between its two renames
    (or the committing process died there); see the module documentation.

    Examples
    --------
    >>> audit_run_ids("memory://doctest-audit-ids", "p1")
    {'files': None, 'entities': None}
    """
    fs = filesystem(audit_root, storage_options)
    ids: dict[str, str | None] = {}
    for table in ("files", "entities"):
        path = partition_path(audit_root, table, partition)
        ids[table] = None
        with suppress(FileNotFoundError):
            with fs.open(path, "rb") as handle:
                meta = pq.read_schema(handle).metadata or {}
            value = meta.get(RUN_ID_KEY)
            ids[table] = value.decode() if value else None
    return ids


# --- summary -----------------------------------------------------------------------------------
def audit_summary(audit_root: str, *, storage_options: dict[str, Any] | None = None) -> str:
    """A plain-text summary of an audit: files per partition and status, entities by type.

    Examples
    --------
    >>> print(audit_summary("memory://doctest-audit-empty"))
    no audit rows under memory://doctest-audit-empty
    """
    files = read_audit(
        audit_root,
        "files",
        columns=["status", "error_code", "header_entities", "pixel_entities", "frames"],
        storage_options=storage_options,
    )
    if files.empty:
        return f"no audit rows under {audit_root}"
    entities = read_audit(
        audit_root,
        "entities",
        columns=["location", "entity_type", "action"],
        storage_options=storage_options,
    )
    status = pd.crosstab(files["partition"], files["status"])
    for column in ("ok", "failed", "skipped"):
        if column not in status.columns:
            status[column] = 0
    per_partition = status[["ok", "failed", "skipped"]].copy()
    per_partition.insert(0, "files", per_partition.sum(axis=1))
    sums = files.groupby("partition")[["header_entities", "pixel_entities", "frames"]].sum()
    per_partition = per_partition.join(sums).rename(
        columns={"header_entities": "header ent.", "pixel_entities": "pixel ent."}
    )
    per_partition.loc["TOTAL"] = per_partition.sum()
    parts = [
        f"audit {audit_root}: {len(files)} files in {files['partition'].nunique()} partitions",
        "",
        per_partition.astype("int64").to_string(),
    ]
    if not entities.empty:
        by_type = pd.crosstab(entities["entity_type"], entities["location"], margins=True)
        by_type.index.name = "entity type"
        by_type.columns.name = None
        parts += ["", "entities by type and location", by_type.to_string()]
        by_action = entities["action"].value_counts().rename("rows")
        by_action.index.name = "action"
        parts += ["", "entities by action", by_action.to_string()]
    failed = files[files["status"] == "failed"]
    if not failed.empty:
        codes = failed["error_code"].fillna("unknown").value_counts().rename("files")
        codes.index.name = "error code"
        parts += ["", "failed files by error code", codes.to_string()]
    return "\n".join(parts)


def audit_summary_cli(audit_root: str) -> int:
    """``dicomscrub audit summary AUDIT``: print :func:`audit_summary`; exit 1 if files failed."""
    print(audit_summary(audit_root))
    failed = read_audit(audit_root, "files", columns=["status"])
    return 1 if (failed["status"] == "failed").any() else 0


# --- partition check (the Dagster asset check and `dicomscrub run` call this) ------------------
@dataclass
class PartitionCheck:
    """Whether a partition's outputs and audit are complete and free of residual PHI.

    Every field is a count or a DICOM keyword: no values, no paths, no PHI.

    Attributes
    ----------
    partition
        The partition key.
    manifest_rows
        Manifest rows in the partition.
    audit_rows
        Rows in the partition's ``files`` audit.
    missing_rows, duplicate_rows, unexpected_rows
        Manifest rows with no audit row; sources with more than one audit row;
        audit rows whose source is not in the partition.
    files_scanned
        Output files re-read and re-scanned.
    outputs_missing
        Audit rows with status ``ok``/``skipped`` whose output does not exist.
    files_with_residual_phi
        Outputs where a deny-list value of the source survives.
    residual_keywords
        Keyword -> number of outputs where it still holds a source value.
    verify_failures
        Files the run itself failed with ``verify_failed``.
    stale_outputs
        Files under the partition's output folder that no audit row names.
    torn_audit
        The ``files`` and ``entities`` footers name different runs (a commit
        caught between its two renames, or a process that died there).
    """

    partition: str
    manifest_rows: int = 0
    audit_rows: int = 0
    missing_rows: int = 0
    duplicate_rows: int = 0
    unexpected_rows: int = 0
    files_scanned: int = 0
    outputs_missing: int = 0
    files_with_residual_phi: int = 0
    residual_keywords: dict[str, int] = field(default_factory=dict)
    verify_failures: int = 0
    stale_outputs: int = 0
    torn_audit: bool = False

    @property
    def accounted_ok(self) -> bool:
        """Every manifest row is in the audit exactly once, nothing else is, one run's audit."""
        return self.manifest_rows == self.audit_rows and not (
            self.missing_rows or self.duplicate_rows or self.unexpected_rows or self.torn_audit
        )

    @property
    def residual_phi_ok(self) -> bool:
        """No output holds a deny-list value of its source, and every output exists."""
        return not (self.files_with_residual_phi or self.outputs_missing)

    @property
    def passed(self) -> bool:
        """Both checks pass and no stale output lingers."""
        return self.accounted_ok and self.residual_phi_ok and not self.stale_outputs

    def to_summary(self) -> dict[str, Any]:
        """A small JSON-safe dict (counts and keywords only)."""
        return {
            "partition": self.partition,
            "passed": self.passed,
            "accounted_ok": self.accounted_ok,
            "residual_phi_ok": self.residual_phi_ok,
            "manifest_rows": self.manifest_rows,
            "audit_rows": self.audit_rows,
            "missing_rows": self.missing_rows,
            "duplicate_rows": self.duplicate_rows,
            "unexpected_rows": self.unexpected_rows,
            "files_scanned": self.files_scanned,
            "outputs_missing": self.outputs_missing,
            "files_with_residual_phi": self.files_with_residual_phi,
            "residual_keywords": dict(sorted(self.residual_keywords.items())),
            "verify_failures": self.verify_failures,
            "stale_outputs": self.stale_outputs,
            "torn_audit": self.torn_audit,
        }


def check_partition(
    manifest: Any,
    partition_key: str,
    output_root: str,
    audit_root: str,
    *,
    rescan_outputs: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> PartitionCheck:
    """Check one partition: every manifest row accounted for once; no residual PHI.

    Reads the partition's ``files`` audit, compares its sources with the
    manifest rows of the partition, and (with ``rescan_outputs``) re-reads each
    written output next to its source and asks
    :func:`dicomscrub.core.verify.find_residual_phi` whether any deny-list value
    of the source survives. Also counts files under the partition's output
    folder that no audit row names.

    Parameters
    ----------
    manifest
        Manifest path/URL or DataFrame.
    partition_key, output_root, audit_root
        As given to :func:`dicomscrub.core.runner.run_partition`.
    rescan_outputs
        Re-scan the outputs for residual PHI (reads every source and output header).
    storage_options
        Passed to fsspec.
    """
    import pydicom

    from .manifest import read_manifest

    validate_partition_key(partition_key, allow_date_like=True)
    rows = read_manifest(manifest, storage_options=storage_options, partition=partition_key)
    if rows.empty:
        raise ConfigurationError("the partition has no usable rows in the manifest")
    check = PartitionCheck(partition=partition_key, manifest_rows=len(rows))
    files = read_partition(audit_root, "files", partition_key, storage_options=storage_options)
    if files is None:
        check.missing_rows = len(rows)
        return check
    check.audit_rows = len(files)
    ids = audit_run_ids(audit_root, partition_key, storage_options=storage_options)
    check.torn_audit = None not in ids.values() and ids["files"] != ids["entities"]
    expected = set(rows["path"])
    counts = Counter(files["source"])
    check.missing_rows = len(expected - set(counts))
    check.duplicate_rows = sum(1 for n in counts.values() if n > 1)
    check.unexpected_rows = len(set(counts) - expected)
    check.verify_failures = int((files["error_code"] == "verify_failed").sum())

    written = files[files["status"].isin(["ok", "skipped"]) & files["output"].notna()]
    out_fs = filesystem(output_root, storage_options)
    folder = join(output_root, partition_key)
    present = set(list_files(out_fs, folder))
    named = set(written["output"])
    check.stale_outputs = len({p for p in present if not is_hidden(p)} - named) + sum(
        1 for p in present if is_hidden(p)
    )
    check.outputs_missing = len(named - present)
    if not rescan_outputs:
        return check

    from .verify import find_residual_phi

    residual: Counter[str] = Counter()
    for source, output in zip(written["source"], written["output"], strict=True):
        if output not in present:
            continue
        src_fs = filesystem(source, storage_options)
        with src_fs.open(source, "rb") as handle:
            original = pydicom.dcmread(handle, force=True)
        with out_fs.open(output, "rb") as handle:
            redacted = pydicom.dcmread(handle)
        check.files_scanned += 1
        found = find_residual_phi(original, redacted)
        if found:
            check.files_with_residual_phi += 1
            residual.update(set(found))
    check.residual_keywords = dict(residual)
    return check
