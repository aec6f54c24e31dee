"""Example DAG: de-identify a folder of DICOM studies, one mapped task per partition.

Copy this file into your dags folder. Its three params say where to read and write; run it
anywhere with::

    airflow dags test dicom_deid -c '{"input": "/data/raw", "output": "/data/deid",
                                      "audit": "/data/deid-audit"}'

Tasks:

1. ``manifest``: scan ``input`` (headers only) into ``<audit>/manifest.parquet`` and return
   its partition keys (one per study by default). Set the ``manifest`` param to read a
   manifest you built yourself instead (then ``input`` is ignored).
2. ``redact``: ``DicomRedactOperator`` mapped over the partitions; each instance is named
   after its partition key, returns a small summary as XCom and emits Asset events.
3. ``summary``: reads the Parquet audit with pandas and logs a table of entities by type.
   It runs even when a partition failed, then fails the run if any partition did.

The pseudonymization secret comes from the ``dicomscrub_default`` connection (see the
provider's README section); it is never a param or a template.

The defaults point at the demo's sample data (``demo/input``, ``demo/output``,
``demo/audit`` in the repository, or under ``$DICOMSCRUB_DEMO_DIR``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from dicomscrub.provider.operators import DicomManifestOperator, DicomRedactOperator

log = logging.getLogger(__name__)

DEMO_DIR = Path(os.environ.get("DICOMSCRUB_DEMO_DIR", Path(__file__).resolve().parents[1] / "demo"))

MANIFEST = "{{ params.manifest or params.audit ~ '/manifest.parquet' }}"


@dag(
    dag_id="dicom_deid",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    render_template_as_native_obj=True,  # lets a dict ``policy`` param reach the operator
    tags=["dicomscrub", "example"],
    params={
        "input": Param(str(DEMO_DIR / "input"), type="string", description="DICOM folder or URL"),
        "output": Param(str(DEMO_DIR / "output"), type="string", description="output root"),
        "audit": Param(str(DEMO_DIR / "audit"), type="string", description="audit root"),
        "manifest": Param(
            "", type="string", description="an existing manifest to use instead of scanning"
        ),
        "partition_by": Param(
            "study", type="string", description="study, patient, study-date, hash:N or a column"
        ),
        "policy": Param(
            "default",
            type=["string", "object"],
            description="a built-in policy name, a YAML path, or a policy dict",
        ),
        "max_failed_fraction": Param(
            0.0, type="number", minimum=0, maximum=1, description="failure budget per partition"
        ),
    },
    doc_md=__doc__,
)
def dicom_deid() -> None:
    partitions = DicomManifestOperator(
        task_id="manifest",
        input="{{ '' if params.manifest else params.input }}",
        manifest=MANIFEST,
        partition_by="{{ params.partition_by }}",
    )

    redact = DicomRedactOperator.partial(
        task_id="redact",
        manifest=MANIFEST,
        output_root="{{ params.output }}",
        audit_root="{{ params.audit }}",
        policy="{{ params.policy }}",
        max_failed_fraction="{{ params.max_failed_fraction }}",
        # Reruns are idempotent: raise this when storage can be flaky. A partition over its
        # budget fails the same way on every try.
        retries=0,
    ).expand(partition=partitions.output)

    @task(trigger_rule="all_done", multiple_outputs=False)
    def summary(audit: str, partitions: list[str]) -> dict[str, Any]:
        """Log entities by type and files by status for this run's partitions."""
        import pandas as pd
        from airflow.sdk.exceptions import AirflowException

        from dicomscrub.core.audit import read_audit

        # pandas DataFrames; the same as pandas.read_parquet(f"{audit}/entities"), limited
        # to this run's partitions.
        files = read_audit(audit, "files", partitions=partitions)
        entities = read_audit(audit, "entities", partitions=partitions)
        if entities.empty:
            log.info("No entities in the audit of these partitions")
        else:
            by_type = pd.crosstab(entities["entity_type"], entities["location"], margins=True)
            log.info("Entities by type and location:\n%s", by_type.to_string())
        by_status = files["status"].value_counts()
        log.info("Files by status:\n%s", by_status.to_string())

        # Mapped instances over their failure budget pushed no summary.
        pulled = get_current_context()["ti"].xcom_pull(
            task_ids="redact", map_indexes=list(range(len(partitions)))
        )
        summaries = [s for s in pulled or [] if s]
        if len(summaries) < len(partitions):
            raise AirflowException(
                f"{len(partitions) - len(summaries)} of {len(partitions)} partitions failed; "
                "see the failed redact tasks and the audit's files table"
            )
        return {
            "files": {str(k): int(v) for k, v in by_status.items()},
            "entities": {str(k): int(v) for k, v in entities["entity_type"].value_counts().items()},
        }

    redact >> summary("{{ params.audit }}", partitions.output)


dicom_deid()
