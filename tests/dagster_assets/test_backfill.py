"""An asset backfill over every partition, executed by Dagster's own backfill daemon logic.

The backfill is submitted the way the UI submits one (a ``PartitionBackfill``
over the partitioned assets, all partitions) and advanced by the daemon's
``execute_backfill_iteration``. Runs launch synchronously in this process
(``SyncInMemoryRunLauncher``, Dagster's launcher for tests) against a code
location loaded from a user-style definitions file built with the public API.
These are Dagster internals, pinned to Dagster 1.13; what they exercise is the
multi-run backfill policy of the shipped assets.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support import TEST_SECRET

pytestmark = [
    pytest.mark.slow,
    # Dagster's in-process run execution inside the daemon loop leaves an event-loop coroutine
    # unawaited on shutdown (dagster/_core/execution/context_creation_job.py); harmless here
    pytest.mark.filterwarnings(
        "ignore:coroutine 'BaseEventLoop.shutdown_asyncgens' was never awaited:RuntimeWarning"
    ),
]

INSTANCE_YAML = """\
telemetry: {enabled: false}
run_coordinator:
  module: dagster._core.run_coordinator.default_run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: dagster._core.launcher.sync_in_memory_run_launcher
  class: SyncInMemoryRunLauncher
"""


def _definitions_file(root: Path, studies: Path) -> Path:
    (root / "policy.yaml").write_text("base: default\npixels:\n  mode: 'off'\n")
    path = root / "deid_defs.py"
    path.write_text(
        textwrap.dedent(
            f"""\
            from dagster import EnvVar

            from dicomscrub.dagster_assets import DicomScrubResource
            from dicomscrub.dagster_assets.definitions import build_definitions

            defs = build_definitions(
                DicomScrubResource(
                    secret=EnvVar("DICOMSCRUB_SECRET"),
                    input={str(studies)!r},
                    manifest={str(root / "manifest.parquet")!r},
                    output_root={str(root / "output")!r},
                    audit_root={str(root / "audit")!r},
                    policy={str(root / "policy.yaml")!r},
                )
            )
            """
        )
    )
    return path


def test_backfill_of_all_partitions_runs_one_partition_per_run(
    tmp_path: Path, studies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter, materialize
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.backfill import execute_backfill_iteration

    from dicomscrub.core.manifest import partition_keys, read_manifest
    from dicomscrub.dagster_assets import (
        AUDIT_ENTITIES,
        AUDIT_FILES,
        DEIDENTIFIED,
        MANIFEST,
        PARTITIONS_NAME,
    )

    monkeypatch.setenv("DICOMSCRUB_SECRET", TEST_SECRET)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    defs_file = _definitions_file(tmp_path, studies)
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            python_file=str(defs_file),
            working_directory=str(tmp_path),
        ),
        location_name="dicomscrub",
    )
    with (
        DagsterInstance.from_config(str(home)) as instance,
        WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([origin])) as context,
    ):
        location = context.create_request_context().get_code_location("dicomscrub")
        repository = location.get_repository("__repository__")
        assert repository is not None
        # the manifest first, as a user would: it registers the partitions
        spec = importlib.util.spec_from_file_location("deid_defs", defs_file)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        defs = module.defs
        manifest_run = materialize(
            [*defs.assets, *defs.asset_checks],
            instance=instance,
            resources=defs.resources,
            selection=[MANIFEST],
        )
        assert manifest_run.success
        keys = partition_keys(read_manifest(str(tmp_path / "manifest.parquet")))
        assert sorted(instance.get_dynamic_partitions(PARTITIONS_NAME)) == keys
        broken = read_manifest(str(tmp_path / "manifest.parquet")).set_index("path")
        broken_key = next(p for path, p in broken["partition"].items() if "truncated" in path)

        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="all-studies",
            asset_graph=context.create_request_context().asset_graph,
            partition_names=None,
            asset_selection=[DEIDENTIFIED, AUDIT_FILES, AUDIT_ENTITIES],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=True,
            title="every study",
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill)
        log = logging.getLogger("test-backfill")
        for _ in range(10):
            list(execute_backfill_iteration(context, log))
            status = instance.get_backfill("all-studies").status
            if status != BulkActionStatus.REQUESTED:
                break
        assert status == BulkActionStatus.COMPLETED_FAILED  # the truncated study's partition

        runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": "all-studies"}))
        assert len(runs) == len(keys) == 3  # multi_run(1): one run per partition
        by_key = {}
        for run in runs:
            start = run.tags["dagster/asset_partition_range_start"]
            assert run.tags["dagster/asset_partition_range_end"] == start
            by_key[start] = run
        assert sorted(by_key) == keys
        for key, run in by_key.items():
            expected = DagsterRunStatus.FAILURE if key == broken_key else DagsterRunStatus.SUCCESS
            assert run.status == expected, key

        for key in keys:
            materialized = {
                asset: instance.get_latest_materialization_event(asset) is not None
                and key in instance.get_materialized_partitions(asset)
                for asset in (DEIDENTIFIED, AUDIT_FILES, AUDIT_ENTITIES)
            }
            assert all(materialized.values()) == (key != broken_key), (key, materialized)
            assert (tmp_path / "audit" / "files" / f"partition={key}").is_dir()
        assert AssetKey("dicom_manifest") not in set(runs[0].asset_selection or ())
