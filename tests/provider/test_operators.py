"""Operator construction, templating, mapping defaults and lineage (no task run here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from airflow.sdk import DAG, Asset, AssetAlias

from dicomscrub.provider.operators import (
    ASSET_ALIAS,
    DicomManifestOperator,
    DicomRedactOperator,
    asset_for,
    storage_uri,
)


def _redact(**overrides: object) -> DicomRedactOperator:
    kwargs: dict[str, object] = {
        "task_id": "redact",
        "manifest": "s3://raw/manifest.parquet",
        "partition": "s-0123456789abcdef",
        "output_root": "s3://deid/output",
        "audit_root": "s3://deid/audit",
    }
    kwargs.update(overrides)
    return DicomRedactOperator(**kwargs)  # type: ignore[arg-type]


def test_init_does_no_io_and_needs_no_connection(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    _redact(
        manifest=str(missing / "m.parquet"),
        output_root=str(missing / "out"),
        audit_root=str(missing / "audit"),
        dicomscrub_conn_id="no_such_connection",
    )
    DicomManifestOperator(
        task_id="manifest",
        input=str(missing / "in"),
        manifest=str(missing / "m.parquet"),
        dicomscrub_conn_id="no_such_connection",
    )
    assert not missing.exists()


def test_template_fields_never_include_the_secret_or_connection() -> None:
    op = _redact()
    assert set(op.template_fields) == {
        "manifest",
        "partition",
        "output_root",
        "audit_root",
        "policy",
        "max_failed_fraction",
        "storage_options",
    }
    assert "dicomscrub_conn_id" not in op.template_fields
    assert not any("secret" in field for field in op.template_fields)


def test_templates_render_paths_policy_and_budget() -> None:
    with DAG("render_test", schedule=None, start_date=dt.datetime(2025, 1, 1)):
        op = _redact(
            output_root="{{ params.out }}",
            policy={"base": "{{ params.policy }}", "pixels": {"mode": "off"}},
            max_failed_fraction="{{ params.budget }}",
        )
    context = {"params": {"out": "/data/deid", "policy": "basic", "budget": "0.25"}}
    op.render_template_fields(context)  # type: ignore[arg-type]
    assert op.output_root == "/data/deid"
    assert op.policy == {"base": "basic", "pixels": {"mode": "off"}}
    assert op.max_failed_fraction == "0.25"


def test_workers_are_validated_at_init() -> None:
    with pytest.raises(ValueError, match="workers"):
        _redact(workers=0)
    with pytest.raises(ValueError, match="file_timeout"):
        _redact(file_timeout=0)
    assert (_redact().file_timeout, _redact(file_timeout=90).file_timeout) == (600.0, 90)


def test_default_outlet_is_the_asset_alias_and_map_index_names_the_partition() -> None:
    op = _redact()
    assert op.outlets == [ASSET_ALIAS]
    assert op.map_index_template == "{{ task.partition }}"
    mine = Asset(uri="s3://deid/output")
    assert _redact(outlets=[mine]).outlets == [mine]


def test_partial_expand_keeps_the_default_outlet_and_map_index_template() -> None:
    with DAG("mapped_test", schedule=None, start_date=dt.datetime(2025, 1, 1)):
        mapped = DicomRedactOperator.partial(
            task_id="redact",
            manifest="m.parquet",
            output_root="/out",
            audit_root="/audit",
        ).expand(partition=["s-1", "s-2"])
    assert mapped.outlets == [ASSET_ALIAS]
    assert isinstance(mapped.outlets[0], AssetAlias)
    assert mapped.map_index_template == "{{ task.partition }}"


def test_storage_uris_and_assets() -> None:
    assert storage_uri("s3://bucket/a/") == "s3://bucket/a"
    assert storage_uri("relative/dir") == "file://" + str(Path("relative/dir").resolve())
    assert asset_for("/data/deid").uri == "file:///data/deid"


def test_openlineage_names_manifest_input_and_output_roots() -> None:
    lineage = _redact().get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://raw", "manifest.parquet")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("s3://deid", "output"),
        ("s3://deid", "audit"),
    ]
    local = _redact(output_root="/data/out", audit_root="/data/audit")
    outputs = local.get_openlineage_facets_on_complete(None).outputs
    names = [(d.namespace, d.name) for d in outputs]
    assert names == [("file", "/data/out"), ("file", "/data/audit")]


def test_missing_secret_fails_the_task_without_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    monkeypatch.setenv("AIRFLOW_CONN_SCRUB_NOSECRET", '{"conn_type": "dicomscrub"}')
    with pytest.raises(AirflowFailException, match="has no secret"):
        _redact(dicomscrub_conn_id="scrub_nosecret").execute({})  # type: ignore[arg-type]
    manifest = DicomManifestOperator(
        task_id="manifest", manifest="m.parquet", dicomscrub_conn_id="scrub_nosecret"
    )
    with pytest.raises(AirflowFailException, match="has no secret"):
        manifest.execute({})  # type: ignore[arg-type]


@pytest.mark.parametrize("budget", ["abc", 1.5, "-0.1"])
def test_invalid_budget_fails_the_task_without_retry(budget: object) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="max_failed_fraction"):
        _redact(max_failed_fraction=budget).execute({})  # type: ignore[arg-type]
