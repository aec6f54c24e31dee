"""The example DAG end to end: real ``dag.test()`` runs on a fresh SQLite metadata DB.

Two small inputs of generated CT studies: a clean one (three studies, run twice to check
idempotence) and one where a study holds a truncated file (its partition goes over the
failure budget). Each run is a subprocess (``dag_test_driver.py``) so that every byte it
logs can be searched for the secret; task states, XCom, rendered templates and asset events
are then read from the metadata DB.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom
import pytest

pytestmark = pytest.mark.slow

DAG_ID = "dicom_deid"
DRIVER = Path(__file__).with_name("dag_test_driver.py")
# The default policy (pixel scanning on), given as the DAG param's built-in name.
POLICY = "default"
NAMES = ["Doe^Jane", "Roe^Richard", "Poe^Edgar"]


@dataclass
class DagRunOutcome:
    """One ``dag.test()`` run: its id and state, and everything it logged."""

    run_id: str
    state: str
    log: str


def run_dag(*confs: dict[str, Any]) -> list[DagRunOutcome]:
    """Run the example DAG once per conf, in order, in one ``dag_test_driver.py`` process."""
    proc = subprocess.run(
        [sys.executable, str(DRIVER), DAG_ID, *(json.dumps(conf) for conf in confs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "OMP_THREAD_LIMIT": "1", "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-5000:]
    outcomes = []
    for number in range(len(confs)):
        segment = proc.stdout.split(f"DAG_TEST_BEGIN {number}\n", 1)[1]
        segment, _, rest = segment.partition("DAG_TEST_RESULT ")
        result = json.loads(rest.splitlines()[0])
        outcomes.append(DagRunOutcome(run_id=result["run_id"], state=result["state"], log=segment))
    return outcomes


def task_instances(run_id: str) -> dict[tuple[str, int], Any]:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(TaskInstance).where(TaskInstance.run_id == run_id)).all()
        return {
            (ti.task_id, ti.map_index): {
                "state": str(ti.state),
                "rendered_map_index": ti.rendered_map_index,
            }
            for ti in rows
        }


def xcoms(run_id: str) -> dict[tuple[str, int, str], Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(XComModel).where(XComModel.run_id == run_id)).all()
        return {(x.task_id, x.map_index, x.key): x.value for x in rows}


def rendered_fields(run_id: str) -> list[Any]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rtif
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(Rtif).where(Rtif.run_id == run_id)).all()
        return [(r.task_id, r.map_index, r.rendered_fields) for r in rows]


def asset_events() -> list[tuple[str, dict[str, Any]]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra).join(
                AssetModel, AssetModel.id == AssetEvent.asset_id
            )
        ).all()
        return [(uri, dict(extra or {})) for uri, extra in rows]


def manifest_partitions(audit: Path) -> dict[str, str]:
    """study UID -> partition key, from the manifest the DAG wrote."""
    manifest = pd.read_parquet(audit / "manifest.parquet")
    usable = manifest[manifest["reject_reason"] == ""]
    return dict(zip(usable["study_uid"], usable["partition"], strict=True))


def snapshot(output: Path, audit: Path) -> dict[str, Any]:
    """Output files (bytes), and the audit rows without run-specific columns."""
    from dicomscrub.core.audit import VOLATILE_FILE_COLUMNS, read_audit

    outputs = {
        str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()
    }
    files = read_audit(str(audit), "files").drop(columns=list(VOLATILE_FILE_COLUMNS))
    entities = read_audit(str(audit), "entities")
    return {
        "outputs": outputs,
        "files": files.sort_values("source").astype(str).to_dict("records"),
        "entities": entities.astype(str).sort_values(list(entities.columns)).to_dict("records"),
    }


@dataclass
class Runs:
    """A clean input run twice, and an input with a truncated file run once."""

    input: Path
    output: Path
    audit: Path
    studies: dict[str, str]
    first: DagRunOutcome
    second: DagRunOutcome
    after_first: dict[str, Any]
    after_second: dict[str, Any]
    budget: DagRunOutcome
    budget_audit: Path
    bad_partition: str
    good_partition: str


@pytest.fixture(scope="module")
def runs(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory, study_writer: Any) -> Runs:
    clean = tmp_path_factory.mktemp("airflow-clean")
    studies = study_writer.make_studies(clean / "input", NAMES)
    clean_conf = {
        "input": str(clean / "input"),
        "output": str(clean / "output"),
        "audit": str(clean / "audit"),
        "policy": POLICY,
    }
    bad = tmp_path_factory.mktemp("airflow-budget")
    bad_studies = study_writer.make_studies(bad / "input", ["Good^Gail", "Bad^Bob"])
    study_writer.write_instance(
        bad / "input" / "study1" / "broken.dcm",
        patient_name="Bad^Bob",
        patient_id="MRN0040211",
        study_uid=bad_studies["Bad^Bob"],
        series_uid=pydicom.uid.generate_uid(),
        truncate=True,
    )
    budget_conf = {
        "input": str(bad / "input"),
        "output": str(bad / "output"),
        "audit": str(bad / "audit"),
        "policy": {"base": POLICY},  # a dict param reaches the operator as a dict
        "max_failed_fraction": 0.2,  # 1 of 3 files fails in the bad partition: over budget
    }

    (first,) = run_dag(clean_conf)
    after_first = snapshot(clean / "output", clean / "audit")
    second, budget = run_dag(clean_conf, budget_conf)  # the rerun, then the budget run
    after_second = snapshot(clean / "output", clean / "audit")
    partitions = manifest_partitions(bad / "audit")
    return Runs(
        input=clean / "input",
        output=clean / "output",
        audit=clean / "audit",
        studies=studies,
        first=first,
        second=second,
        after_first=after_first,
        after_second=after_second,
        budget=budget,
        budget_audit=bad / "audit",
        bad_partition=partitions[bad_studies["Bad^Bob"]],
        good_partition=partitions[bad_studies["Good^Gail"]],
    )


def test_example_dag_parses_without_import_errors(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    assert bag.import_errors == {}
    dag = bag.get_dag(DAG_ID)
    assert dag is not None
    assert {"input", "output", "audit"} <= set(dag.params.keys())
    assert set(dag.task_ids) == {"manifest", "redact", "summary"}


def test_run_succeeds_with_one_mapped_instance_per_partition(runs: Runs) -> None:
    assert runs.first.state == "success", runs.first.log[-5000:]
    partitions = sorted(manifest_partitions(runs.audit).values())
    assert len(set(partitions)) == len(NAMES)
    tis = task_instances(runs.first.run_id)
    redact = {k: v for k, v in tis.items() if k[0] == "redact"}
    assert len(redact) == len(NAMES)
    assert all(v["state"] == "success" for v in tis.values())
    # map_index_template names each instance after its partition key
    assert sorted(v["rendered_map_index"] for v in redact.values()) == sorted(set(partitions))


def test_xcom_summaries_match_the_audit(runs: Runs) -> None:
    from dicomscrub.core.audit import read_audit

    values = xcoms(runs.first.run_id)
    assert sorted(values[("manifest", -1, "return_value")]) == sorted(
        set(manifest_partitions(runs.audit).values())
    )
    entities = read_audit(str(runs.audit), "entities")
    for map_index in range(len(NAMES)):
        summary = values[("redact", map_index, "return_value")]
        json.dumps(summary)  # JSON-safe
        assert summary["files"] == 2
        assert summary["counts"] == {"ok": 2, "failed": 0, "skipped": 0}
        assert summary["budget_exceeded"] is False
        mine = entities[entities["partition"] == summary["partition"]]
        assert summary["entities_by_type"] == mine["entity_type"].value_counts().to_dict()
        assert sum(summary["entities_by_type"].values()) > 0
    final = values[("summary", -1, "return_value")]
    assert final["files"] == {"ok": 2 * len(NAMES)}
    assert final["entities"] == entities["entity_type"].value_counts().to_dict()


def test_audit_rows_and_output_files_are_present(runs: Runs) -> None:
    from dicomscrub.core.audit import read_audit

    files = read_audit(str(runs.audit), "files")
    sources = {str(p) for p in runs.input.rglob("*.dcm")}
    assert set(files["source"]) == sources
    assert len(files) == len(sources)
    assert (files["status"] == "ok").all()
    outputs = sorted(runs.output.rglob("*.dcm"))
    assert len(outputs) == len(sources)
    assert {str(Path(p).resolve()) for p in files["output"]} == {str(p) for p in outputs}
    for path in outputs:
        data = path.read_bytes()
        header = pydicom.dcmread(path, stop_before_pixels=True)
        assert str(header.PatientName) not in NAMES
        assert header.StudyInstanceUID not in runs.studies.values()
        for name in NAMES:
            assert name.encode() not in data
    entities = read_audit(str(runs.audit), "entities")
    assert {"PatientName", "PatientID"} <= set(entities["keyword"])
    assert entities["value_hmac"].str.len().min() > 0


def differing_elements(first: bytes, second: bytes) -> list[str]:
    """Keywords whose values differ between two DICOM files (for the failure message)."""

    def flat(data: bytes) -> dict[str, str]:
        ds = pydicom.dcmread(io.BytesIO(data))
        elements = [*ds.file_meta, *ds.iterall()]
        return {f"{e.tag} {e.keyword}": repr(e.value) for e in elements if e.VR != "SQ"}

    a, b = flat(first), flat(second)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def test_rerun_is_idempotent(runs: Runs) -> None:
    assert runs.second.state == "success", runs.second.log[-5000:]
    before, after = runs.after_first["outputs"], runs.after_second["outputs"]
    assert len(before) == 2 * len(NAMES)
    assert sorted(after) == sorted(before)  # same paths, no orphans, no duplicates
    changed = {
        name: differing_elements(before[name], after[name])
        for name in before
        if before[name] != after[name]
    }
    assert changed == {}, "outputs differ between runs in these elements"
    assert runs.after_second["files"] == runs.after_first["files"]
    assert runs.after_second["entities"] == runs.after_first["entities"]


def test_asset_events_carry_counts(runs: Runs) -> None:
    events = asset_events()
    for root in (runs.output, runs.audit):
        mine = [extra for uri, extra in events if uri == f"file://{root}"]
        # one event per partition and run
        assert len(mine) == 2 * len(NAMES)
        assert all(e["counts"]["ok"] == 2 and e["files"] == 2 for e in mine)
        assert {e["partition"] for e in mine} == set(manifest_partitions(runs.audit).values())


def test_secret_never_reaches_logs_xcom_rendered_fields_or_events(
    runs: Runs, airflow_secret: str, airflow_db: Path
) -> None:
    for run in (runs.first, runs.second, runs.budget):
        assert "Partition s-" in run.log  # the task logs were captured
        assert airflow_secret not in run.log
        assert airflow_secret not in json.dumps(
            {repr(k): v for k, v in xcoms(run.run_id).items()}, default=str
        )
        rendered = json.dumps(rendered_fields(run.run_id), default=str)
        assert "output_root" in rendered
        assert airflow_secret not in rendered
    assert airflow_secret not in json.dumps(asset_events(), default=str)
    for path in (airflow_db / "logs").rglob("*"):
        if path.is_file():
            assert airflow_secret.encode() not in path.read_bytes(), path


def test_partition_over_budget_fails_its_task_and_the_others_succeed(runs: Runs) -> None:
    from dicomscrub.core.audit import read_audit

    tis = task_instances(runs.budget.run_id)
    states = {v["rendered_map_index"]: v["state"] for k, v in tis.items() if k[0] == "redact"}
    assert states == {runs.bad_partition: "failed", runs.good_partition: "success"}
    # the summary still ran, logged the audit, then failed the run
    assert tis[("summary", -1)]["state"] == "failed"
    assert runs.budget.state == "failed"
    assert "Files by status" in runs.budget.log
    # the failed partition's audit was written, with the failed file and its error code
    files = read_audit(str(runs.budget_audit), "files")
    bad = files[files["partition"] == runs.bad_partition]
    assert sorted(bad["status"]) == ["failed", "ok", "ok"]
    assert bad.loc[bad["status"] == "failed", "error_code"].tolist() == ["truncated"]
    good = files[files["partition"] == runs.good_partition]
    assert sorted(good["status"]) == ["ok", "ok"]
    values = xcoms(runs.budget.run_id)
    returned = [v for (task, _, key), v in values.items() if task == "redact"]
    assert [s["partition"] for s in returned] == [runs.good_partition]
