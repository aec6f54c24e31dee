"""The Dagster resource that holds dicomscrub's settings and calls the core.

:class:`DicomScrubResource` is the one place a Dagster user configures
dicomscrub: where the manifest, outputs and audit live (fsspec URLs), which
policy applies, how many worker processes run, the failure budget, and the
pseudonymization secret. The secret is read from an environment variable via
``dagster.EnvVar`` so that it never appears in code, run configuration, the
UI, event logs or metadata.

Examples
--------
>>> from dagster import EnvVar
>>> scrub = DicomScrubResource(
...     manifest="data/manifest.parquet",
...     output_root="data/output",
...     audit_root="data/audit",
...     secret=EnvVar("DICOMSCRUB_SECRET"),
... )
>>> scrub.policy, scrub.workers, scrub.max_failed_fraction
('default', 1, 0.0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from dagster import ConfigurableResource
from pydantic import Field

if TYPE_CHECKING:
    import pandas as pd

    from dicomscrub.core.audit import PartitionCheck
    from dicomscrub.core.runner import PartitionResult


# entity columns the preview needs to outline masked boxes
_PREVIEW_COLUMNS = [
    "source",
    "location",
    "tag",
    "keyword",
    "entity_type",
    "detector",
    "action",
    "frame",
    "box",
]


class DicomScrubResource(ConfigurableResource):  # type: ignore[type-arg]
    """De-identify manifest partitions with dicomscrub and read back their audit.

    Every path is a local path or an fsspec URL (``s3://``, ``gs://``,
    ``memory://``), so the same definitions run on one laptop or on Celery and
    Kubernetes workers with no shared disk. Every worker must use the same
    secret: pseudonyms (UIDs, IDs, date shifts) are keyed HMACs of the
    original values, so they only agree across partitions and runs that share
    it.

    Examples
    --------
    Bind the secret to an environment variable, never to a literal:

    >>> from dagster import Definitions, EnvVar
    >>> scrub = DicomScrubResource(
    ...     input="s3://pacs-export/2024/",
    ...     manifest="s3://research/manifest.parquet",
    ...     output_root="s3://research/deid",
    ...     audit_root="s3://research/audit",
    ...     policy="default",
    ...     workers=4,
    ...     max_failed_fraction=0.01,
    ...     secret=EnvVar("DICOMSCRUB_SECRET"),
    ... )
    >>> defs = Definitions(resources={"dicomscrub": scrub})
    """

    secret: str = Field(
        description="Pseudonymization secret (keyed HMAC). Always bind it with "
        "EnvVar('DICOMSCRUB_SECRET'); use the same value on every worker and run."
    )
    manifest: str = Field(
        description="Manifest location (.parquet or .csv, path or fsspec URL). Built there "
        "from `input` when `input` is set, else read from there."
    )
    output_root: str = Field(
        description="Where de-identified files are written: "
        "<output_root>/<partition>/<study>/<series>/<instance>.dcm (path or fsspec URL)."
    )
    audit_root: str = Field(
        description="Root of the Parquet audit datasets `files` and `entities`, "
        "hive-partitioned by partition key (path or fsspec URL)."
    )
    input: str | None = Field(
        default=None,
        description="Directory or fsspec URL to scan into the manifest. Leave empty to use "
        "a manifest you built yourself.",
    )
    partition_by: str = Field(
        default="study",
        description="How the manifest groups files into partitions: study, study-date, "
        "hash:N (N buckets of whole studies) or a manifest column name.",
    )
    policy: str = Field(
        default="default",
        description="Policy: a built-in name (default, seed-compatible, basic, all-text) or "
        "the path of a policy YAML file.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Worker processes per partition (one per core is a good start).",
    )
    max_failed_fraction: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Failure budget: a partition whose failed files exceed this fraction fails "
        "its materialization. Failed files are always in the audit.",
    )
    resume: bool = Field(
        default=False,
        description="Skip files whose source hash and policy hash already succeeded.",
    )
    file_timeout: float = Field(
        default=600.0,
        gt=0,
        description="With workers > 1: seconds a file may run; one that hangs longer, also "
        "when retried alone, fails with worker_timeout and the partition goes on.",
    )
    preview: Literal["redacted", "before_after", "off"] = Field(
        default="redacted",
        description="Preview image in the partition's metadata: 'redacted' (the output with "
        "masked boxes outlined), 'before_after' (also the original pixels, burned-in PHI "
        "included: only for synthetic data or an instance with the sources' access rules), "
        "or 'off'.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for the manifest, output and audit URLs "
        "(e.g. {'endpoint_url': ...}). Prefer environment credentials to secrets here.",
    )

    def run_partition(self, partition_key: str) -> PartitionResult:
        """De-identify one partition of the manifest and commit its audit.

        Parameters
        ----------
        partition_key
            A partition key of the manifest.

        Returns
        -------
        PartitionResult
            Counts, entity counts by type, paths and timings; no PHI.
        """
        from dicomscrub.core.runner import run_partition

        return run_partition(
            self.manifest,
            partition_key,
            self.output_root,
            self.audit_root,
            policy=self.policy,
            secret=self.secret,
            workers=self.workers,
            max_failed_fraction=self.max_failed_fraction,
            resume=self.resume,
            storage_options=self.storage_options or None,
            file_timeout=self.file_timeout,
        )

    def check_partition(self, partition_key: str, *, rescan_outputs: bool = True) -> PartitionCheck:
        """Check a partition's outputs and audit (counts and keywords only; no PHI).

        Parameters
        ----------
        partition_key
            A partition key of the manifest.
        rescan_outputs
            Re-read every output and its source to search for residual PHI.
        """
        from dicomscrub.core.audit import check_partition

        return check_partition(
            self.manifest,
            partition_key,
            self.output_root,
            self.audit_root,
            rescan_outputs=rescan_outputs,
            storage_options=self.storage_options or None,
        )

    def preview_png(self, result: PartitionResult) -> bytes | None:
        """The preview PNG of a partition's sample file (``None`` when off or impossible)."""
        from dicomscrub.core.audit import read_audit

        from .preview import partition_preview

        if self.preview == "off" or result.sample is None:
            return None
        entities = read_audit(
            self.audit_root,
            "entities",
            partition=result.partition,
            columns=_PREVIEW_COLUMNS,
            storage_options=self.storage_options or None,
        )
        return partition_preview(
            result.sample,
            entities,
            mode=self.preview,
            storage_options=self.storage_options or None,
        )

    def read_audit(self, table: str, partition_key: str) -> pd.DataFrame:
        """Read one partition of an audit table (``files`` or ``entities``) with pandas.

        Downstream assets use this to consume the audit assets::

            @asset(partitions_def=DICOM_PARTITIONS, deps=[AUDIT_ENTITIES])
            def pixel_findings(context, dicomscrub: DicomScrubResource):
                entities = dicomscrub.read_audit("entities", context.partition_key)
                ...
        """
        from dicomscrub.core.audit import read_audit

        return read_audit(
            self.audit_root,
            table,
            partition=partition_key,
            storage_options=self.storage_options or None,
        )
