"""DicomScrubHook: the secret comes from a dicomscrub connection (env var forms)."""

from __future__ import annotations

import json
import uuid

import pytest

from dicomscrub.core.errors import ConfigurationError
from dicomscrub.provider.hooks import DicomScrubHook


@pytest.fixture
def unique_secret() -> str:
    return f"hook-test-{uuid.uuid4().hex}"


def test_default_connection_id() -> None:
    assert DicomScrubHook().dicomscrub_conn_id == "dicomscrub_default"


def test_secret_from_json_env_connection(
    monkeypatch: pytest.MonkeyPatch, unique_secret: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCRUB_JSON",
        json.dumps({"conn_type": "dicomscrub", "extra": {"secret": unique_secret}}),
    )
    assert DicomScrubHook("scrub_json").get_secret() == unique_secret


def test_secret_from_uri_password(monkeypatch: pytest.MonkeyPatch, unique_secret: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SCRUB_URI", f"dicomscrub://:{unique_secret}@")
    assert DicomScrubHook("scrub_uri").get_secret() == unique_secret


def test_secret_from_prefixed_extra(monkeypatch: pytest.MonkeyPatch, unique_secret: str) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCRUB_PREFIXED",
        json.dumps(
            {"conn_type": "dicomscrub", "extra": {"extra__dicomscrub__secret": unique_secret}}
        ),
    )
    assert DicomScrubHook("scrub_prefixed").get_secret() == unique_secret


def test_missing_secret_fails_without_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCRUB_EMPTY",
        json.dumps({"conn_type": "dicomscrub", "login": "someone", "extra": {"other": "x"}}),
    )
    hook = DicomScrubHook("scrub_empty")
    with pytest.raises(ConfigurationError, match="has no secret") as excinfo:
        hook.get_secret()
    assert "someone" not in str(excinfo.value)
    ok, message = hook.test_connection()
    assert not ok
    assert "scrub_empty" in message


def test_test_connection_never_returns_the_secret(
    monkeypatch: pytest.MonkeyPatch, unique_secret: str
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_SCRUB_OK",
        json.dumps({"conn_type": "dicomscrub", "extra": {"secret": unique_secret}}),
    )
    ok, message = DicomScrubHook("scrub_ok").test_connection()
    assert ok
    assert unique_secret not in message


def test_connection_resolves_to_this_hook(
    monkeypatch: pytest.MonkeyPatch, unique_secret: str
) -> None:
    from airflow.sdk import Connection

    monkeypatch.setenv(
        "AIRFLOW_CONN_SCRUB_GETHOOK",
        json.dumps({"conn_type": "dicomscrub", "extra": {"secret": unique_secret}}),
    )
    hook = Connection.get("scrub_gethook").get_hook()
    assert isinstance(hook, DicomScrubHook)
    assert hook.get_secret() == unique_secret


def test_secret_is_registered_with_the_secrets_masker(
    monkeypatch: pytest.MonkeyPatch, unique_secret: str
) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    monkeypatch.setenv("AIRFLOW_CONN_SCRUB_MASK", f"dicomscrub://:{unique_secret}@")
    assert redact(f"key is {unique_secret}") == f"key is {unique_secret}"
    DicomScrubHook("scrub_mask").get_secret()
    assert redact(f"key is {unique_secret}") == "key is ***"
