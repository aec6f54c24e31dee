"""Blocking asset checks on each de-identified partition.

* ``no_residual_phi``: every output the audit names exists, and each is
  re-read next to its source and searched for the source's deny-list values
  (its own identifiers); files the engine refused at write-time verification
  (``verify_failed``, never written) are reported with it.
* ``manifest_rows_accounted_for``: every manifest row of the partition
  appears exactly once in the ``files`` audit, the audit lists nothing else,
  and every file under the partition's output folder is named by the audit.

Both call :func:`dicomscrub.core.audit.check_partition`.

Both are blocking with ERROR severity: when one fails, the run stops before
the audit assets and anything a user put downstream of
``deidentified_dicom``. Check metadata carries counts and attribute keywords,
never values.
"""

# No ``from __future__ import annotations`` here: Dagster inspects the ``context``
# annotation of check functions at definition time and needs the real class.
import warnings

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    PartitionsDefinition,
    PreviewWarning,
    asset_check,
)

from .assets import DEIDENTIFIED
from .metadata import count_table
from .partitions import DICOM_PARTITIONS
from .resource import DicomScrubResource


def build_checks(
    partitions_def: PartitionsDefinition = DICOM_PARTITIONS,
) -> list[AssetChecksDefinition]:
    """Return the two blocking, partitioned checks on ``deidentified_dicom``.

    Examples
    --------
    >>> sorted(c.check_key.name for c in build_checks())
    ['manifest_rows_accounted_for', 'no_residual_phi']
    """
    with warnings.catch_warnings():
        # partitioned asset checks are "preview" in Dagster 1.13
        warnings.simplefilter("ignore", PreviewWarning)
        return _build_checks(partitions_def)


def _build_checks(partitions_def: PartitionsDefinition) -> list[AssetChecksDefinition]:
    @asset_check(
        asset=DEIDENTIFIED,
        name="no_residual_phi",
        blocking=True,
        partitions_def=partitions_def,
        description="Re-reads every output of the partition next to its source and searches "
        "it for the source's identifiers (deny-list values); every output the audit names "
        "exists. Also reports files the run itself refused at write-time verification.",
    )
    def no_residual_phi(
        context: AssetCheckExecutionContext, dicomscrub: DicomScrubResource
    ) -> AssetCheckResult:
        report = dicomscrub.check_partition(context.partition_key)
        return AssetCheckResult(
            passed=report.residual_phi_ok,
            severity=AssetCheckSeverity.ERROR,
            description=None
            if report.residual_phi_ok
            else "outputs hold identifiers of their sources, or outputs are missing",
            metadata={
                "files_scanned": MetadataValue.int(report.files_scanned),
                "files_with_residual_phi": MetadataValue.int(report.files_with_residual_phi),
                "residual_keywords": count_table(report.residual_keywords, "keyword", "files"),
                "outputs_missing": MetadataValue.int(report.outputs_missing),
                "verify_failures": MetadataValue.int(report.verify_failures),
            },
        )

    @asset_check(
        asset=DEIDENTIFIED,
        name="manifest_rows_accounted_for",
        blocking=True,
        partitions_def=partitions_def,
        description="Every manifest row of the partition appears exactly once in the `files` "
        "audit (ok, failed or skipped), the audit lists nothing else, and every file under "
        "the partition's output folder is named by the audit.",
    )
    def manifest_rows_accounted_for(
        context: AssetCheckExecutionContext, dicomscrub: DicomScrubResource
    ) -> AssetCheckResult:
        report = dicomscrub.check_partition(context.partition_key, rescan_outputs=False)
        passed = report.accounted_ok and not report.stale_outputs
        return AssetCheckResult(
            passed=passed,
            severity=AssetCheckSeverity.ERROR,
            description=None
            if passed
            else "the audit and the manifest (or the output folder) disagree",
            metadata={
                "manifest_rows": MetadataValue.int(report.manifest_rows),
                "audit_rows": MetadataValue.int(report.audit_rows),
                "missing_rows": MetadataValue.int(report.missing_rows),
                "duplicate_rows": MetadataValue.int(report.duplicate_rows),
                "unexpected_rows": MetadataValue.int(report.unexpected_rows),
                "stale_outputs": MetadataValue.int(report.stale_outputs),
            },
        )

    return [no_residual_phi, manifest_rows_accounted_for]
