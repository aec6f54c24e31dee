"""`make demo` runs: the demo module end to end in a subprocess, as a new user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from support import REPO_ROOT

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end_with_a_generated_demo_only_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DICOMSCRUB_", "DAGSTER_"))}
    demo = tmp_path / "demo"
    command = [sys.executable, "-m", "dicomscrub.dagster_assets.demo", "--dir", str(demo)]
    result = subprocess.run(
        [*command, "--patients", "1"],  # one study keeps CI quick; `make demo` uses three
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, (out + result.stderr)[-3000:]
    assert "Traceback" not in result.stderr

    secret_file = demo / "demo-only-secret.txt"
    secret = secret_file.read_text().strip()
    assert len(secret) >= 32
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    assert "DEMO-ONLY" in out
    assert secret not in out + result.stderr
    # nowhere in the instance (SQLite runs, events, compute logs), outputs, audit or manifest
    leaking = [
        p
        for p in demo.rglob("*")
        if p.is_file() and p != secret_file and secret.encode() in p.read_bytes()
    ]
    assert not leaking

    assert "all partitions and checks passed" in out
    assert "no_residual_phi passed" in out
    assert "manifest_rows_accounted_for passed" in out
    outputs = sorted((demo / "output").rglob("*.dcm"))
    inputs = sorted((demo / "input" / "dicom").rglob("*.dcm"))
    assert len(outputs) == len(inputs) > 0
    assert all(pydicom.dcmread(p).PatientIdentityRemoved == "YES" for p in outputs)

    files = pd.read_parquet(demo / "audit" / "files")
    entities = pd.read_parquet(demo / "audit" / "entities")
    assert set(files["status"]) == {"ok"}
    assert len(files) == len(inputs)
    assert (entities["location"] == "pixel").any()  # burned-in text was masked
    assert "entities by type and location" in out
    assert (demo / "dagster_home" / "history").is_dir()  # runs are in the SQLite instance
    previews = sorted((demo / "previews").glob("*.png"))
    assert previews  # the demo asks for before/after: synthetic data on a local instance
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in previews)
