"""The shipped Definitions: environment configuration, `dagster definitions validate`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from support import REPO_ROOT, TEST_SECRET

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DICOMSCRUB_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), DICOMSCRUB_DATA=str(tmp_path / "data"), **extra)
    return env


def test_resource_from_env_defaults_and_overrides(tmp_path: Path) -> None:
    from dicomscrub.dagster_assets.definitions import resource_from_env

    base = tmp_path / "data"
    default = resource_from_env({"DICOMSCRUB_DATA": str(base)})
    assert default.input == f"{base}/input"
    assert default.manifest == f"{base}/manifest.parquet"
    assert default.output_root == f"{base}/output"
    assert default.audit_root == f"{base}/audit"
    assert (default.policy, default.workers, default.max_failed_fraction) == ("default", 1, 0.0)
    assert default.file_timeout == 600.0
    # the secret is bound to the variable's name, never to a value
    assert default.secret == "DICOMSCRUB_SECRET"

    custom = resource_from_env(
        {
            "DICOMSCRUB_SECRET": TEST_SECRET,
            "DICOMSCRUB_INPUT": "",
            "DICOMSCRUB_MANIFEST": "s3://bucket/m.parquet",
            "DICOMSCRUB_OUTPUT": "s3://bucket/out",
            "DICOMSCRUB_AUDIT": "s3://bucket/audit",
            "DICOMSCRUB_POLICY": "all-text",
            "DICOMSCRUB_WORKERS": "2",
            "DICOMSCRUB_MAX_FAILED_FRACTION": "0.05",
            "DICOMSCRUB_PREVIEW": "off",
            "DICOMSCRUB_FILE_TIMEOUT": "120",
        }
    )
    assert custom.file_timeout == 120.0
    assert custom.input is None
    assert (default.preview, custom.preview) == ("redacted", "off")
    assert (custom.output_root, custom.audit_root) == ("s3://bucket/out", "s3://bucket/audit")
    assert (custom.policy, custom.workers, custom.max_failed_fraction) == ("all-text", 2, 0.05)
    assert TEST_SECRET not in repr(custom)
    assert custom.secret == "DICOMSCRUB_SECRET"


def test_bad_numbers_are_configuration_errors() -> None:
    from dicomscrub.core.errors import ConfigurationError
    from dicomscrub.dagster_assets.definitions import resource_from_env

    with pytest.raises(ConfigurationError, match="DICOMSCRUB_WORKERS must be a number"):
        resource_from_env({"DICOMSCRUB_WORKERS": "many"})
    with pytest.raises(ConfigurationError, match="DICOMSCRUB_PREVIEW must be one of"):
        resource_from_env({"DICOMSCRUB_PREVIEW": "everything"})


def test_static_partitions_come_from_the_manifest(tmp_path: Path) -> None:
    from dicomscrub.dagster_assets.definitions import definitions_from_env

    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(
        {"path": ["/x/a.dcm", "/x/b.dcm", "/x/c.dcm"], "partition": ["s-2", "s-1", "s-2"]}
    ).to_csv(manifest, index=False)
    defs = definitions_from_env(
        {"DICOMSCRUB_PARTITIONS": "static", "DICOMSCRUB_MANIFEST": str(manifest)}
    )
    job = defs.resolve_job_def("dicomscrub_partition_job")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys() == ["s-1", "s-2"]


def test_pyproject_points_dagster_at_the_shipped_definitions() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert config["module_name"] == "dicomscrub.dagster_assets.definitions"


@pytest.mark.slow
def test_dagster_definitions_validate(tmp_path: Path) -> None:
    result = subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "dicomscrub.dagster_assets.definitions"],
        cwd=REPO_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "All code locations passed validation" in result.stderr + result.stdout
