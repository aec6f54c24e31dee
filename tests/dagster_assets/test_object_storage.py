"""The asset graph with everything on object storage: moto's S3 server on loopback.

Sources, manifest, outputs and audit are ``s3://`` URLs; nothing is shared on
disk between the assets except the policy file. Pixels are left alone here
(``pixels.mode: off``) to keep the test quick: what it exercises is the
storage plumbing of every asset, check and the preview.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def test_every_asset_and_check_runs_on_s3(
    tmp_path: Path, studies: Path, s3_server: Any, s3_bucket: str
) -> None:
    import s3fs
    from dagster import AssetSelection, DagsterInstance, EnvVar, materialize

    from dicomscrub.core.manifest import partition_keys, read_manifest
    from dicomscrub.dagster_assets import DEIDENTIFIED, MANIFEST, DicomScrubResource
    from dicomscrub.dagster_assets.definitions import build_definitions

    options = s3_server.storage_options
    fs = s3fs.S3FileSystem(**options)
    good = [p for p in sorted(studies.rglob("*.dcm")) if "broken" not in p.parts]
    for path in good:
        fs.put_file(str(path), f"{s3_bucket}/in/{path.relative_to(studies)}")
    policy = tmp_path / "policy.yaml"
    policy.write_text("base: default\npixels:\n  mode: 'off'\n")

    resource = DicomScrubResource(
        secret=EnvVar("DICOMSCRUB_SECRET"),
        input=f"{s3_bucket}/in",
        manifest=f"{s3_bucket}/manifest.parquet",
        output_root=f"{s3_bucket}/out",
        audit_root=f"{s3_bucket}/audit",
        policy=str(policy),
        storage_options=options,
    )
    defs = build_definitions(resource)
    graph = [*(defs.assets or []), *(defs.asset_checks or [])]
    with DagsterInstance.ephemeral() as instance:
        assert materialize(
            graph, instance=instance, resources=defs.resources, selection=[MANIFEST]
        ).success
        manifest = read_manifest(resource.manifest, storage_options=options, scan_missing=False)
        keys = partition_keys(manifest)
        assert len(keys) == 2
        for key in keys:
            run = materialize(
                graph,
                instance=instance,
                resources=defs.resources,
                partition_key=key,
                selection=AssetSelection.assets(DEIDENTIFIED).downstream(),
            )
            assert run.success
            checks = {c.check_name: c.passed for c in run.get_asset_check_evaluations()}
            assert checks == {"no_residual_phi": True, "manifest_rows_accounted_for": True}
            metadata = {
                e.asset_key.to_user_string(): e.materialization.metadata
                for e in run.get_asset_materialization_events()
            }
            deid = metadata["deidentified_dicom"]
            rows = int((manifest["partition"] == key).sum())
            assert deid["files_ok"].value == rows
            assert deid["output_path"].value == f"{s3_bucket}/out/{key}"
            assert deid["preview"].value.startswith("![")
            assert metadata["dicom_audit_files"]["dagster/row_count"].value == rows
            assert len(fs.find(f"{s3_bucket}/out/{key}")) == rows

    files = pd.read_parquet(f"{s3_bucket}/audit/files", storage_options=options)
    assert len(files) == len(good)
    assert set(files["status"]) == {"ok"}
    assert all(str(o).startswith(f"{s3_bucket}/out/") for o in files["output"])
