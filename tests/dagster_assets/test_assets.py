"""The Dagster asset graph end to end: real materializations on an ephemeral instance.

Inputs come from the project's synthetic generator (burned-in text, free-text
PHI, sequences); the engine, OCR, Parquet audit and checks are the real ones.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom
import pytest

from support import TEST_SECRET

# `scrubbed` (conftest.py): the pipeline materialized once per module.
pytestmark = pytest.mark.slow

DEID = "deidentified_dicom"
AUDIT_ASSETS = {"dicom_audit_files", "dicom_audit_entities"}
CHECKS = {"no_residual_phi", "manifest_rows_accounted_for"}


def _materialized(result: Any) -> dict[str, Any]:
    """Asset key -> materialization metadata of a run."""
    return {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


def _failures(result: Any) -> list[str]:
    """Step failure messages of a run (for assertion messages)."""
    out = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            data = event.step_failure_data
            out.append(f"{event.step_key}: {data.error.message if data.error else data}")
    return out


def _checks(result: Any) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def _manifest(scrubbed: Any) -> pd.DataFrame:
    return pd.read_parquet(scrubbed.manifest)


def _tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _audit_rows(scrubbed: Any, table: str, key: str) -> list[dict[str, Any]]:
    """Audit rows of a partition without the run-dependent columns (timings, run id and time)."""
    frame = scrubbed.resource.read_audit(table, key)
    drop = [c for c in frame.columns if c.startswith("seconds") or c in {"run_id", "processed_at"}]
    rows = frame.drop(columns=drop).astype(str).to_dict("records")
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def test_manifest_asset_registers_one_partition_per_study(scrubbed: Any) -> None:
    manifest = _manifest(scrubbed)
    studies = manifest.loc[manifest["reject_reason"] == "", "study_uid"].nunique()
    assert len(scrubbed.keys) == studies == 3
    assert sorted(scrubbed.instance.get_dynamic_partitions("dicomscrub_partitions")) == sorted(
        scrubbed.keys
    )
    (metadata,) = _materialized(scrubbed.manifest_run).values()
    assert metadata["dagster/row_count"].value == len(manifest)
    assert metadata["partitions"].value == 3


def test_each_partition_materializes_with_metadata_outputs_and_audit(
    scrubbed: Any,
) -> None:
    manifest = _manifest(scrubbed)
    for key in scrubbed.good:
        result = scrubbed.runs[key]
        assert result.success, _failures(result)
        assets = _materialized(result)
        assert set(assets) == {DEID, *AUDIT_ASSETS}
        assert _checks(result) == dict.fromkeys(CHECKS, True)

        rows = manifest[manifest["partition"] == key]
        md = assets[DEID]
        assert md["files_ok"].value == len(rows)
        assert md["files_failed"].value == 0
        entity_types = {
            r.data["entity_type"]: r.data["count"] for r in md["entities_by_type"].records
        }
        assert entity_types.get("PERSON", 0) > 0
        assert md["entities"].value == sum(entity_types.values())
        assert Path(md["output_path"].value) == scrubbed.output / key
        assert md["seconds"].value > 0
        assert Path(md["audit_files"].value).is_file()
        assert Path(md["audit_entities"].value).is_file()

        outputs = sorted((scrubbed.output / key).rglob("*.dcm"))
        assert len(outputs) == len(rows)
        names = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientName) for p in outputs}
        originals = {
            str(pydicom.dcmread(p, stop_before_pixels=True).PatientName) for p in rows["path"]
        }
        assert not names & originals

        files = scrubbed.resource.read_audit("files", key)
        entities = scrubbed.resource.read_audit("entities", key)
        assert sorted(files["source"]) == sorted(rows["path"])
        assert set(files["status"]) == {"ok"}
        assert len(entities) == md["entities"].value
        assert assets["dicom_audit_files"]["dagster/row_count"].value == len(files)
        assert assets["dicom_audit_entities"]["dagster/row_count"].value == len(entities)


def test_partition_metadata_embeds_a_redacted_preview(scrubbed: Any) -> None:
    from PIL import Image

    shown = 0
    for key in scrubbed.good:
        md = _materialized(scrubbed.runs[key])[DEID]
        if md["pixels_changed"].value == 0:
            continue
        markdown = md["preview"].value
        assert markdown.startswith("![")
        png = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG"
        # one panel (the output as written), not the original beside it
        output = pydicom.dcmread(md["preview_of"].value, stop_before_pixels=True)
        assert Path(md["preview_of"].value).is_relative_to(scrubbed.output / key)
        ratio = image.width / image.height
        assert ratio == pytest.approx(output.Columns / output.Rows, rel=0.02)
        shown += 1
    assert shown, "no partition with masked pixels carried a preview"


def test_partition_over_failure_budget_fails_while_others_succeed(scrubbed: Any) -> None:
    result = scrubbed.runs[scrubbed.broken]
    assert not result.success
    assert DEID not in _materialized(result)
    assert all(scrubbed.runs[k].success for k in scrubbed.good)
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    description = failure.step_failure_data.user_failure_data.description
    assert "budget" in description
    assert "1 of 1 files failed" in description
    files = scrubbed.resource.read_audit("files", scrubbed.broken)
    assert files["status"].tolist() == ["failed"]
    assert files["error_code"].iloc[0]

    from dicomscrub.dagster_assets import DicomScrubResource

    lenient = DicomScrubResource(
        **{**scrubbed.resource_config, "max_failed_fraction": 1.0}  # the rest unchanged
    )
    rerun = scrubbed.materialize(scrubbed.broken, resource=lenient)
    assert rerun.success, _failures(rerun)
    assert _materialized(rerun)[DEID]["files_failed"].value == 1
    assert _checks(rerun) == dict.fromkeys(CHECKS, True)


def test_rerun_of_a_partition_is_idempotent(scrubbed: Any) -> None:
    key = scrubbed.good[0]
    before = (
        _tree(scrubbed.output / key),
        _audit_rows(scrubbed, "files", key),
        _audit_rows(scrubbed, "entities", key),
    )
    rerun = scrubbed.materialize(key)
    assert rerun.success, _failures(rerun)
    after = (
        _tree(scrubbed.output / key),
        _audit_rows(scrubbed, "files", key),
        _audit_rows(scrubbed, "entities", key),
    )
    assert after == before
    audit_files = list((scrubbed.audit / "files" / f"partition={key}").iterdir())
    assert len(audit_files) == 1


def _check_and_downstream() -> Any:
    from dagster import AssetSelection

    from dicomscrub.dagster_assets import AUDIT_ENTITIES, AUDIT_FILES, DEIDENTIFIED

    return AssetSelection.checks_for_assets(DEIDENTIFIED) | AssetSelection.assets(
        AUDIT_FILES, AUDIT_ENTITIES
    )


def test_residual_phi_fails_the_check_and_blocks_downstream(scrubbed: Any) -> None:
    key = scrubbed.good[0]
    files = scrubbed.resource.read_audit("files", key)
    row = files.iloc[0]
    output = Path(row["output"])
    saved = output.read_bytes()
    source_name = pydicom.dcmread(row["source"], stop_before_pixels=True).PatientName
    tampered = pydicom.dcmread(output)
    tampered.PatientName = source_name  # as if a later step had put the name back
    tampered.save_as(output)
    try:
        result = scrubbed.materialize(key, selection=_check_and_downstream())
    finally:
        output.write_bytes(saved)
    assert not result.success
    assert _checks(result)["no_residual_phi"] is False
    assert not set(_materialized(result)) & AUDIT_ASSETS
    check = next(
        c for c in result.get_asset_check_evaluations() if c.check_name == "no_residual_phi"
    )
    assert check.metadata["files_with_residual_phi"].value == 1
    keywords = {r.data["keyword"] for r in check.metadata["residual_keywords"].records}
    assert "PatientName" in keywords
    assert str(source_name) not in json.dumps({k: str(v) for k, v in check.metadata.items()})


def test_unaccounted_output_fails_the_check_and_blocks_downstream(scrubbed: Any) -> None:
    key = scrubbed.good[-1]
    stray = scrubbed.output / key / "stray.dcm"
    stray.write_bytes(b"not from this run")
    try:
        result = scrubbed.materialize(key, selection=_check_and_downstream())
    finally:
        stray.unlink()
    assert not result.success
    assert _checks(result)["manifest_rows_accounted_for"] is False
    assert not set(_materialized(result)) & AUDIT_ASSETS
    passed_again = scrubbed.materialize(key, selection=_check_and_downstream())
    assert passed_again.success
    assert set(_materialized(passed_again)) == AUDIT_ASSETS


def test_secret_is_absent_from_event_logs_run_config_and_metadata(scrubbed: Any) -> None:
    from dagster._serdes import serialize_value

    instance = scrubbed.instance
    runs = instance.get_runs()
    assert len(runs) >= len(scrubbed.keys) + 1
    for run in runs:
        assert TEST_SECRET not in serialize_value(run)
        for record in instance.all_logs(run.run_id):
            assert TEST_SECRET not in serialize_value(record)
    audit_bytes = b"".join(p.read_bytes() for p in scrubbed.audit.rglob("*.parquet"))
    assert TEST_SECRET.encode() not in audit_bytes
    output_bytes = b"".join(p.read_bytes() for p in scrubbed.output.rglob("*.dcm"))
    assert TEST_SECRET.encode() not in output_bytes
    # yet the runs used it: pseudonymized UIDs are keyed with exactly this secret
    from dicomscrub.core.pseudonyms import Pseudonymizer

    manifest = _manifest(scrubbed).set_index("path")
    files = scrubbed.resource.read_audit("files", scrubbed.good[0])
    row = files.iloc[0]
    original = manifest.loc[row["source"], "study_uid"]
    assert row["output_study_uid"] == Pseudonymizer(TEST_SECRET).uid(original)
    assert scrubbed.resource.secret == "DICOMSCRUB_SECRET"  # bound by name, not value
