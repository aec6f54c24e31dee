"""Provider registration: provider info, the providers manager, ``airflow providers list``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from dicomscrub.provider.get_provider_info import get_provider_info


def test_provider_info_validates_against_airflows_schema() -> None:
    import airflow

    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_secret_field_is_a_password_conn_field() -> None:
    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == "dicomscrub"
    assert conn_type["hook-class-name"] == "dicomscrub.provider.hooks.DicomScrubHook"
    secret = conn_type["conn-fields"]["secret"]
    assert secret["schema"]["format"] == "password"


def test_providers_manager_lists_provider_hook_and_sensitive_field() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "dicomscrub" in manager.providers
    assert manager.providers["dicomscrub"].data["name"] == "dicomscrub"
    widgets = manager.connection_form_widgets
    assert widgets["extra__dicomscrub__secret"].is_sensitive
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["dicomscrub"]
    assert hook is not None
    assert hook.hook_class_name == "dicomscrub.provider.hooks.DicomScrubHook"
    assert hook.connection_id_attribute_name == "dicomscrub_conn_id"


@pytest.mark.slow
def test_airflow_providers_list_shows_dicomscrub(airflow_db: Path) -> None:
    airflow = Path(sys.executable).parent / "airflow"
    proc = subprocess.run(
        [str(airflow), "providers", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    start = proc.stdout.index("[")
    providers = {p["package_name"]: p for p in json.loads(proc.stdout[start:])}
    assert providers["dicomscrub"]["version"] == get_provider_info()["versions"][0]
