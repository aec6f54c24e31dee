"""The Parquet audit: schemas, streaming writes, atomic replacement, reading back with pandas."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from dicomscrub.core.audit import (
    ENTITIES_SCHEMA,
    FILES_SCHEMA,
    SCHEMA_VERSION,
    PartitionAuditWriter,
    audit_summary,
    check_partition,
    partition_path,
    read_audit,
    read_partition,
)
from dicomscrub.core.cli import main
from dicomscrub.core.results import Entity, FileResult

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
RAW = "ZZSECRETNAME^RAW"


def _result(i: int, *, status: str = "ok", entities: int = 2) -> FileResult:
    ents = [
        Entity(
            location="header" if k % 2 == 0 else "pixel",
            tag="(0010,0010)" if k % 2 == 0 else "(7FE0,0010)",
            keyword="PatientName" if k % 2 == 0 else "",
            entity_type="PERSON",
            detector="profile" if k % 2 == 0 else "ocr",
            action="replaced" if k % 2 == 0 else "masked",
            value_hmac=f"{i:02d}{k:062d}",
            replacement="PATIENT^X" if k % 2 == 0 else None,
            frame=None if k % 2 == 0 else 0,
            box=None if k % 2 == 0 else (1, 2, 3, 4),
            confidence=0.9,
            raw_text=RAW,
        )
        for k in range(entities)
    ]
    if status == "failed":
        return FileResult(
            source=f"/in/{i}.dcm",
            source_sha256=f"{i:064d}",
            status="failed",
            error_code="truncated",
            error_message="element length runs past the end of the data",
        )
    return FileResult(
        source=f"/in/{i}.dcm",
        source_sha256=f"{i:064d}",
        output=f"/out/p/2.25.1/2.25.2/2.25.{i}.dcm",
        entities=ents,
        frames=1,
        timings={"read": 0.01, "deidentify": 0.02, "encode": 0.001, "write": 0.003, "total": 0.04},
        uids={"StudyInstanceUID": "2.25.1", "SeriesInstanceUID": "2.25.2",
              "SOPInstanceUID": f"2.25.{i}"},
        modality="CT",
        pixels_changed=entities > 1,
    )  # fmt: skip


def _write(root: str, partition: str, results: list[FileResult], **kw: int) -> dict[str, str]:
    writer = PartitionAuditWriter(root, partition, **kw)
    for r in results:
        writer.add(r, source_size=100, policy_hash="ph", engine_version="0.1.0", run_id="run",
                   processed_at=NOW)  # fmt: skip
    return writer.commit()


def test_files_and_entities_read_back_with_plain_pandas(tmp_path: Path) -> None:
    root = str(tmp_path / "audit")
    _write(root, "p-one", [_result(0), _result(1, status="failed")])
    _write(root, "p-two", [_result(2, entities=5)])
    files = pd.read_parquet(f"{root}/files")
    entities = pd.read_parquet(f"{root}/entities")
    assert sorted(files["source"]) == ["/in/0.dcm", "/in/1.dcm", "/in/2.dcm"]
    assert set(files["partition"].astype(str)) == {"p-one", "p-two"}
    assert list(files.columns[:-1]) == FILES_SCHEMA.names
    assert list(entities.columns[:-1]) == ENTITIES_SCHEMA.names
    failed = files.set_index("source").loc["/in/1.dcm"]
    assert failed["status"] == "failed"
    assert failed["error_code"] == "truncated"
    assert pd.isna(failed["output"])
    ok = files.set_index("source").loc["/in/2.dcm"]
    assert (ok["header_entities"], ok["pixel_entities"], ok["frames"]) == (3, 2, 1)
    assert ok["output_sop_uid"] == "2.25.2"
    assert ok["seconds_deidentify"] == pytest.approx(0.02)
    assert ok["processed_at"] == pd.Timestamp(NOW)
    assert len(entities) == 2 + 5
    pixel = entities[entities["location"] == "pixel"].iloc[0]
    assert list(pixel["box"]) == [1, 2, 3, 4]
    assert pixel["frame"] == 0
    assert (files["schema_version"] == SCHEMA_VERSION).all()


def test_raw_text_never_reaches_the_audit(tmp_path: Path) -> None:
    root = tmp_path / "audit"
    _write(str(root), "p", [_result(0, entities=4)])
    assert "raw_text" not in ENTITIES_SCHEMA.names
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        assert RAW not in table.to_pandas().astype(str).to_csv()
        assert RAW.encode() not in path.read_bytes()


def test_schema_metadata_is_versioned(tmp_path: Path) -> None:
    root = str(tmp_path / "audit")
    paths = _write(root, "p", [_result(0)])
    for table, path in paths.items():
        meta = pq.read_schema(path).metadata
        assert meta[b"dicomscrub.audit.schema_version"] == str(SCHEMA_VERSION).encode()
        assert meta[b"dicomscrub.audit.table"] == table.encode()
    assert paths["files"] == partition_path(root, "files", "p")


def test_a_rewrite_replaces_the_partition_and_leaves_others(tmp_path: Path) -> None:
    root = str(tmp_path / "audit")
    _write(root, "p-a", [_result(0), _result(1)])
    _write(root, "p-b", [_result(5)])
    _write(root, "p-a", [_result(2)])
    files = read_audit(root, "files")
    assert sorted(files["source"]) == ["/in/2.dcm", "/in/5.dcm"]
    assert sorted(read_audit(root, "entities")["source"].unique()) == ["/in/2.dcm", "/in/5.dcm"]
    for table in ("files", "entities"):
        folder = tmp_path / "audit" / table / "partition=p-a"
        assert [p.name for p in folder.iterdir()] == ["part-0.parquet"]


def test_an_aborted_write_keeps_the_previous_audit(tmp_path: Path) -> None:
    root = str(tmp_path / "audit")
    _write(root, "p", [_result(0)])
    writer = PartitionAuditWriter(root, "p")
    writer.add(_result(9), source_size=1, policy_hash="x", engine_version="0", run_id="r",
               processed_at=NOW)  # fmt: skip
    hidden = list((tmp_path / "audit" / "files" / "partition=p").glob(".*"))
    assert hidden  # the new rows stream into a hidden temporary ...
    assert list(read_audit(root, "files")["source"]) == ["/in/0.dcm"]  # ... readers ignore
    writer.abort()
    assert list(read_audit(root, "files")["source"]) == ["/in/0.dcm"]
    assert not list((tmp_path / "audit" / "files" / "partition=p").glob(".*"))


def test_many_row_groups_and_an_empty_entities_table(tmp_path: Path) -> None:
    root = str(tmp_path / "audit")
    _write(root, "p", [_result(i, entities=3) for i in range(25)], batch_rows=4)
    assert pq.ParquetFile(partition_path(root, "files", "p")).num_row_groups == 7
    assert len(read_audit(root, "entities", partition="p")) == 75
    _write(root, "q", [_result(99, status="failed")])
    empty = read_partition(root, "entities", "q")
    assert empty is not None
    assert empty.empty
    assert list(empty.columns[:-1]) == ENTITIES_SCHEMA.names


def test_digit_only_partition_keys_stay_text(tmp_path: Path) -> None:
    root = str(tmp_path / "audit")
    _write(root, "007", [_result(0)])
    _write(root, "12", [_result(1)])
    files = read_audit(root, "files")
    assert sorted(files["partition"]) == ["007", "12"]
    assert read_audit(root, "files", partitions=["007"])["source"].tolist() == ["/in/0.dcm"]
    assert read_audit(str(tmp_path / "none"), "files").empty


def test_audit_summary_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "audit")
    _write(root, "p-one", [_result(0), _result(1, status="failed")])
    _write(root, "p-two", [_result(2, entities=3)])
    text = audit_summary(root)
    assert "3 files in 2 partitions" in text
    assert "TOTAL" in text
    assert "truncated" in text
    assert "PERSON" in text
    assert main(["audit", "summary", root]) == 1  # a failed file
    assert "p-two" in capsys.readouterr().out
    _write(root, "p-one", [_result(0)])
    assert main(["audit", "summary", root]) == 0


def test_check_partition_without_an_audit(tmp_path: Path) -> None:
    manifest = pd.DataFrame({"path": ["/in/0.dcm", "/in/1.dcm"], "partition": "p"})
    manifest = manifest.assign(sop_uid="", series_uid="", study_uid="", modality="",
                               study_date="", patient_key="", size=1)  # fmt: skip
    check = check_partition(manifest, "p", str(tmp_path / "o"), str(tmp_path / "a"))
    assert check.missing_rows == 2
    assert not check.accounted_ok
    assert not check.passed
    _write(str(tmp_path / "a"), "p", [_result(0), _result(1, status="failed"), _result(3)])
    check = check_partition(
        manifest, "p", str(tmp_path / "o"), str(tmp_path / "a"), rescan_outputs=False
    )
    assert (check.missing_rows, check.unexpected_rows, check.outputs_missing) == (0, 1, 2)


def test_entity_rows_equal_to_record() -> None:
    from dicomscrub.core.audit import entity_rows

    result = _result(0, entities=4)
    for entity, row in zip(result.entities, entity_rows(result), strict=True):
        record = entity.to_record()
        assert set(record) <= set(ENTITIES_SCHEMA.names)  # a new Entity field needs a schema bump
        assert {k: v for k, v in row.items() if k not in ("schema_version", "source")} == {
            k: record[k] for k in ENTITIES_SCHEMA.names if k in record
        }
        assert row["source"] == result.source


def test_both_footers_name_the_run_and_a_torn_audit_is_reported(tmp_path: Path) -> None:
    from dicomscrub.core.audit import audit_run_ids

    root, other = str(tmp_path / "audit"), str(tmp_path / "other")
    assert audit_run_ids(root, "p") == {"files": None, "entities": None}
    writer = PartitionAuditWriter(root, "p", run_id="run-a")
    writer.add(_result(0), source_size=1, policy_hash="x", engine_version="0", run_id="run-a",
               processed_at=NOW)  # fmt: skip
    writer.commit()
    assert audit_run_ids(root, "p") == {"files": "run-a", "entities": "run-a"}
    _write(root, "p", [_result(0)])  # a new writer: a new random id in both footers
    ids = audit_run_ids(root, "p")
    assert ids["files"] == ids["entities"] != "run-a"
    assert pq.read_schema(partition_path(root, "files", "p")).names == FILES_SCHEMA.names

    manifest = pd.DataFrame({"path": ["/in/0.dcm"], "partition": "p"})
    manifest = manifest.assign(sop_uid="", series_uid="", study_uid="", modality="",
                               study_date="", patient_key="", size=1)  # fmt: skip
    kw = {"rescan_outputs": False}
    assert not check_partition(manifest, "p", str(tmp_path / "o"), root, **kw).torn_audit
    # The state a reader could catch between the two renames of a commit (or that a process
    # killed right there leaves): the new entities next to the previous files.
    PartitionAuditWriter(other, "p", run_id="run-b").commit()
    Path(partition_path(root, "entities", "p")).write_bytes(
        Path(partition_path(other, "entities", "p")).read_bytes()
    )
    check = check_partition(manifest, "p", str(tmp_path / "o"), root, **kw)
    assert check.torn_audit
    assert not check.accounted_ok
    assert check.to_summary()["torn_audit"] is True
