"""Shared fixtures for the Dagster tests: one real pipeline run, reused by every test.

:func:`studies` generates synthetic studies once per session with the project's
generator, plus one study whose only file is truncated (to exercise the failure
budget). :func:`scrubbed` materializes the shipped asset graph over them on an
ephemeral Dagster instance: the manifest asset, then every partition with its
checks and audit assets. Tests read the results and may rerun single partitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from support import TEST_SECRET

PATIENTS = 2  # two studies (ct, mr templates): burned-in text, several partitions


@dataclass
class Scrubbed:
    """Everything a test needs to inspect (and rerun) the materialized pipeline."""

    root: Path
    input: Path
    manifest: str
    output: Path
    audit: Path
    resource: Any
    instance: Any
    graph: list[Any]
    keys: list[str]
    broken: str
    manifest_run: Any
    resource_config: dict[str, Any]
    runs: dict[str, Any] = field(default_factory=dict)

    @property
    def good(self) -> list[str]:
        return [k for k in self.keys if k != self.broken]

    def materialize(
        self,
        key: str,
        *,
        selection: Any = None,
        resource: Any = None,
    ) -> Any:
        """Materialize ``key``'s de-identified asset, its checks and the audit assets."""
        from dagster import AssetSelection, materialize

        from dicomscrub.dagster_assets import DEIDENTIFIED

        return materialize(
            self.graph,
            instance=self.instance,
            resources={"dicomscrub": resource or self.resource},
            partition_key=key,
            selection=selection or AssetSelection.assets(DEIDENTIFIED).downstream(),
            raise_on_error=False,
        )


def _add_truncated_study(dicom_dir: Path, target: Path) -> None:
    """Copy an uncompressed generated image as a new study, cut inside its pixel data."""
    for path in sorted(dicom_dir.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        if "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_compressed:
            break
    else:  # pragma: no cover - the generator always writes uncompressed images
        raise AssertionError("no uncompressed image in the generated corpus")
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) - len(ds.PixelData) // 2])


@pytest.fixture(scope="session")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated studies (two good ones, one truncated); returns the folder of DICOM files."""
    from dicomscrub.core.answer_key import DICOM_DIR
    from dicomscrub.core.samples import generate_corpus

    corpus = tmp_path_factory.mktemp("studies")
    generate_corpus(corpus, seed=11, patients=PATIENTS)
    dicom_dir = corpus / DICOM_DIR
    _add_truncated_study(dicom_dir, dicom_dir / "broken" / "truncated.dcm")
    return dicom_dir


@pytest.fixture(scope="session")
def scrubbed(tmp_path_factory: pytest.TempPathFactory, studies: Path) -> Iterator[Scrubbed]:
    """Materialize the manifest and every partition once on an ephemeral instance."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DICOMSCRUB_SECRET", TEST_SECRET)
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")
    from dagster import DagsterInstance, EnvVar, materialize

    from dicomscrub.core.manifest import partition_keys, read_manifest
    from dicomscrub.dagster_assets import MANIFEST, DicomScrubResource
    from dicomscrub.dagster_assets.definitions import build_definitions

    root = tmp_path_factory.mktemp("dagster")
    dicom_dir = studies

    config: dict[str, Any] = {
        "secret": EnvVar("DICOMSCRUB_SECRET"),
        "input": str(dicom_dir),
        "manifest": str(root / "manifest.parquet"),
        "output_root": str(root / "output"),
        "audit_root": str(root / "audit"),
        "workers": 1,
    }
    resource = DicomScrubResource(**config)
    defs = build_definitions(resource)
    graph = [*(defs.assets or []), *(defs.asset_checks or [])]
    instance = DagsterInstance.ephemeral()
    manifest_run = materialize(
        graph, instance=instance, resources={"dicomscrub": resource}, selection=[MANIFEST]
    )
    frame = read_manifest(resource.manifest, scan_missing=False)
    keys = partition_keys(frame)
    broken_rows = frame[frame["path"].str.endswith("truncated.dcm")]
    scrubbed = Scrubbed(
        root=root,
        input=dicom_dir,
        manifest=resource.manifest,
        output=root / "output",
        audit=root / "audit",
        resource=resource,
        instance=instance,
        graph=graph,
        keys=keys,
        broken=str(broken_rows["partition"].iloc[0]),
        manifest_run=manifest_run,
        resource_config=config,
    )
    for key in keys:
        scrubbed.runs[key] = scrubbed.materialize(key)
    yield scrubbed
    instance.dispose()
    monkeypatch.undo()
