"""The distribution installs only namespaced packages, and the editable install maps the folders."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support import REPO_ROOT


def _uv() -> str:
    local = REPO_ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed (make install puts it in .tools/bin)")
    return found


@pytest.mark.slow
def test_wheel_holds_only_the_dicomscrub_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [
            _uv(), "build", "--wheel", "--quiet", "--no-build-isolation",
            "--python", sys.executable, "--out-dir", str(tmp_path), str(REPO_ROOT),
        ],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("dicomscrub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"dicomscrub", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    packages = {name.split("/")[1] for name in names if name.startswith("dicomscrub/")}
    assert packages == {"core", "provider", "dagster_assets"}
    assert "dicomscrub/core/data/confidentiality_profile.json" in names
    assert "dicomscrub/core/py.typed" in names


def test_editable_install_maps_the_repository_folders() -> None:
    import dicomscrub.core
    import dicomscrub.dagster_assets
    import dicomscrub.provider

    assert Path(dicomscrub.core.__file__).parent == REPO_ROOT / "core"
    assert Path(dicomscrub.provider.__file__).parent == REPO_ROOT / "provider"
    assert Path(dicomscrub.dagster_assets.__file__).parent == REPO_ROOT / "dagster_assets"


def test_core_never_imports_the_orchestrators() -> None:
    offenders = [
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "core").rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.lstrip().startswith(
            ("import airflow", "from airflow", "import dagster", "from dagster")
        )
    ]
    assert offenders == []
