"""Turn core results into Dagster metadata (counts, tables, paths, the preview).

Only PHI-free values go in: counts, entity types, partition keys, paths built
from pseudonymized UIDs, timings, and the preview image of a redacted frame.

Examples
--------
>>> md = preview_markdown(b"\\x89PNG...")
>>> md.value.startswith("![before and after](data:image/png;base64,")
True
"""

from __future__ import annotations

import base64
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
    return MetadataValue.md(f"![before and after](data:image/png;base64,{data})")


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
    """Metadata of a de-identified partition from ``PartitionResult.to_summary()``."""
    counts: Mapping[str, int] = summary.get("counts", {})
    entities: Mapping[str, int] = summary.get("entities_by_type", {})
    timings: Mapping[str, float] = summary.get("timings", {})
    md: Metadata = {
        "files_ok": MetadataValue.int(int(counts.get("ok", 0))),
        "files_failed": MetadataValue.int(int(counts.get("failed", 0))),
        "files_skipped": MetadataValue.int(int(counts.get("skipped", 0))),
        "entities": MetadataValue.int(sum(int(v) for v in entities.values())),
        "entities_by_type": count_table(entities, "entity_type"),
        "output_path": location(str(summary.get("output", ""))),
        "audit_path": location(str(summary.get("audit", ""))),
    }
    for name, seconds in timings.items():
        md[f"seconds_{name}"] = MetadataValue.float(round(float(seconds), 3))
    if preview is not None:
        md["preview"] = preview_markdown(preview)
    return md


def manifest_metadata(frame: pd.DataFrame, keys: list[str], *, manifest_url: str) -> Metadata:
    """Metadata of the manifest: rows, rejected rows, partitions, files per partition."""
    rejected = frame["reject_reason"].fillna("").astype(str) != ""
    usable = frame[~rejected]
    reasons = frame.loc[rejected, "reject_reason"].astype(str).str.partition(":")[0]
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
        "rejected_by_reason": count_table(reasons.value_counts().to_dict(), "error_code", "rows"),
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
        by = frame.groupby(["location", "entity_type"]).size()
        md["entities_by_location_and_type"] = count_table(
            {f"{loc}/{kind}": n for (loc, kind), n in by.items()}, "location/entity_type"
        )
    return md
