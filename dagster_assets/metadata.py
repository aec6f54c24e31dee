"""Turn core results into Dagster metadata (counts, tables, paths, the preview).

Only PHI-free values go in: counts, entity types, partition keys, paths built
from pseudonymized UIDs, timings, and the preview image of a redacted frame.

Examples
--------
>>> md = preview_markdown(b"\\x89PNG...")
>>> md.value.startswith("![preview](data:image/png;base64,")
True
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd
from dagster import (
    MarkdownMetadataValue,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

Metadata = dict[str, Any]


def preview_markdown(png: bytes) -> MarkdownMetadataValue:
    """Embed a PNG in markdown as a data URI (the Dagster UI renders it inline)."""
    data = base64.b64encode(png).decode("ascii")
    return MetadataValue.md(f"![preview](data:image/png;base64,{data})")


def count_table(
    counts: Mapping[Any, int], key: str, value: str = "count", *, limit: int = 200
) -> Any:
    """Return a two-column Dagster table of ``counts``, largest first (at most ``limit`` rows)."""
    schema = TableSchema(
        columns=[TableColumn(key, "string"), TableColumn(value, "int")],
    )
    records = [
        TableRecord({key: str(k), value: int(v)})
        for k, v in sorted(counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0])))[:limit]
    ]
    return MetadataValue.table(records=records, schema=schema)


def location(url: str) -> Any:
    """A path for local files, a URL for object storage."""
    return MetadataValue.url(url) if "://" in url else MetadataValue.path(url)


def partition_metadata(summary: Mapping[str, Any], *, preview: bytes | None) -> Metadata:
    """Metadata of a de-identified partition from ``PartitionResult.to_summary()``.

    Examples
    --------
    >>> md = partition_metadata(
    ...     {"counts": {"ok": 2, "failed": 1}, "entities_by_type": {"PERSON": 3, "DATE": 1},
    ...      "output": "/out/s-1", "audit_files": "/audit/files/partition=s-1/part-0.parquet",
    ...      "seconds": 1.5, "timings": {"pixels": 1.0}},
    ...     preview=None)
    >>> md["files_ok"].value, md["files_failed"].value, md["entities"].value
    (2, 1, 4)
    >>> [r.data["entity_type"] for r in md["entities_by_type"].records]
    ['PERSON', 'DATE']
    """
    counts: Mapping[str, int] = summary.get("counts", {})
    entities: Mapping[str, int] = summary.get("entities_by_type", {})
    md: Metadata = {
        "files_ok": MetadataValue.int(int(counts.get("ok", 0))),
        "files_failed": MetadataValue.int(int(counts.get("failed", 0))),
        "files_skipped": MetadataValue.int(int(counts.get("skipped", 0))),
        "entities": MetadataValue.int(sum(int(v) for v in entities.values())),
        "entities_by_type": count_table(entities, "entity_type"),
    }
    if summary.get("entities_by_location"):
        md["entities_by_location"] = count_table(summary["entities_by_location"], "location")
    if summary.get("error_codes"):
        md["failed_by_error_code"] = count_table(summary["error_codes"], "error_code", "files")
    for name in ("frames", "pixels_changed", "stale_removed"):
        if name in summary:
            md[name] = MetadataValue.int(int(summary[name]))
    for name in ("output", "audit_files", "audit_entities"):
        if summary.get(name):
            md[f"{name}_path" if name == "output" else name] = location(str(summary[name]))
    if "seconds" in summary:
        md["seconds"] = MetadataValue.float(float(summary["seconds"]))
    if "files_per_second" in summary:
        md["files_per_second"] = MetadataValue.float(float(summary["files_per_second"]))
    for step, seconds in summary.get("timings", {}).items():
        md[f"seconds_{step}"] = MetadataValue.float(round(float(seconds), 3))
    for name in ("policy_hash", "engine_version"):
        if summary.get(name):
            md[name] = MetadataValue.text(str(summary[name]))
    if preview is not None:
        md["preview"] = preview_markdown(preview)
    return md


def manifest_metadata(frame: pd.DataFrame, keys: list[str], *, manifest_url: str) -> Metadata:
    """Metadata of the manifest: rows, rejected rows, partitions, files per partition."""
    rejected = frame["reject_reason"].fillna("").astype(str) != ""
    usable = frame[~rejected]
    reasons = Counter(str(r).split(":", 1)[0] for r in frame.loc[rejected, "reject_reason"])
    return {
        "dagster/row_count": MetadataValue.int(len(frame)),
        "rows_rejected": MetadataValue.int(int(rejected.sum())),
        "partitions": MetadataValue.int(len(keys)),
        "manifest": location(manifest_url),
        "files_per_partition": count_table(
            usable.groupby("partition").size().to_dict(), "partition", "files"
        ),
        "files_by_modality": count_table(
            usable["modality"].replace("", "(none)").value_counts().to_dict(), "modality", "files"
        ),
        "rejected_by_reason": count_table(reasons, "error_code", "rows"),
    }


def audit_table_metadata(
    table: str, frame: pd.DataFrame, *, audit_root: str, partition: str
) -> Metadata:
    """Metadata of one partition of an audit table: rows, schema, a breakdown, the path."""
    md: Metadata = {
        "dagster/row_count": MetadataValue.int(len(frame)),
        "dagster/column_schema": MetadataValue.table_schema(
            TableSchema(columns=[TableColumn(str(c), str(t)) for c, t in frame.dtypes.items()])
        ),
        "path": location(f"{audit_root.rstrip('/')}/{table}/partition={partition}"),
    }
    if table == "files" and "status" in frame:
        md["files_by_status"] = count_table(frame["status"].value_counts().to_dict(), "status")
    if table == "entities" and {"location", "entity_type"} <= set(frame.columns):
        labels = frame["location"].astype(str) + "/" + frame["entity_type"].astype(str)
        md["entities_by_location_and_type"] = count_table(
            labels.value_counts().to_dict(), "location/entity_type"
        )
    return md
