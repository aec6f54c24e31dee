"""The asset graph: manifest -> de-identified partitions -> audit tables.

::

    dicom_manifest                      (unpartitioned: builds or reads the manifest,
       |                                 registers its partition keys)
    deidentified_dicom [partition]      (run_partition; blocking checks:
       |                                 no_residual_phi, manifest_rows_accounted_for)
       +-- dicom_audit_files [partition]
       +-- dicom_audit_entities [partition]

Every asset returns :class:`dagster.MaterializeResult`: the data lives where
the resource says (output root, audit root), not in an IO manager, so the same
definitions run on any executor with object storage and no shared disk.
Downstream assets declare ``deps=[AUDIT_ENTITIES]`` (or ``AUDIT_FILES``,
``DEIDENTIFIED``) and read what they need through
:meth:`DicomScrubResource.read_audit`; a failing blocking check on
``deidentified_dicom`` stops them.

Examples
--------
>>> [a.key.to_user_string() for a in build_assets()]
['dicom_manifest', 'deidentified_dicom', 'dicom_audit_files', 'dicom_audit_entities']
"""

# No ``from __future__ import annotations`` here: Dagster inspects the ``context``
# annotation of asset functions at definition time and needs the real class.
import time
import warnings

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    DynamicPartitionsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

from .metadata import audit_table_metadata, location, manifest_metadata, partition_metadata
from .partitions import DICOM_PARTITIONS
from .resource import DicomScrubResource

GROUP = "dicomscrub"
MANIFEST = AssetKey("dicom_manifest")
DEIDENTIFIED = AssetKey("deidentified_dicom")
AUDIT_FILES = AssetKey("dicom_audit_files")
AUDIT_ENTITIES = AssetKey("dicom_audit_entities")

# One run per partition: a failed partition is retried alone, and each run carries
# that partition's blocking checks. See docs/dagster.md for the trade-off.
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=1)


def build_assets(
    partitions_def: PartitionsDefinition = DICOM_PARTITIONS,
) -> list[AssetsDefinition]:
    """Return the four dicomscrub assets over ``partitions_def``.

    Parameters
    ----------
    partitions_def
        :data:`~dicomscrub.dagster_assets.partitions.DICOM_PARTITIONS`
        (dynamic, filled by the manifest asset; the default) or a fixed
        definition from
        :func:`~dicomscrub.dagster_assets.partitions.static_partitions_from_manifest`.

    Examples
    --------
    >>> from dagster import StaticPartitionsDefinition
    >>> assets = build_assets(StaticPartitionsDefinition(["s-1", "s-2"]))
    >>> assets[1].partitions_def.get_partition_keys()
    ['s-1', 's-2']
    """
    with warnings.catch_warnings():
        # backfill_policy is "beta" in Dagster 1.13; we rely on multi_run only
        warnings.simplefilter("ignore", BetaWarning)
        return _build_assets(partitions_def)


def _build_assets(partitions_def: PartitionsDefinition) -> list[AssetsDefinition]:
    @asset(
        key=MANIFEST,
        group_name=GROUP,
        kinds={"dicom", "parquet"},
        description="The study manifest: one row per input file with its partition key. "
        "Built from the resource's `input` when set, else read from `manifest`. "
        "Registers the manifest's partition keys as dynamic partitions.",
    )
    def dicom_manifest(
        context: AssetExecutionContext, dicomscrub: DicomScrubResource
    ) -> MaterializeResult[None]:
        from dicomscrub.core.manifest import (
            build_manifest,
            partition_keys,
            read_manifest,
            write_manifest,
        )

        started = time.perf_counter()
        options = dicomscrub.storage_options or None
        if dicomscrub.input:
            frame = build_manifest(
                dicomscrub.input,
                partition_by=dicomscrub.partition_by,
                workers=max(4, dicomscrub.workers),
                storage_options=options,
                secret=dicomscrub.secret,
            )
            write_manifest(frame, dicomscrub.manifest, storage_options=options)
        else:
            frame = read_manifest(
                dicomscrub.manifest,
                partition_by=dicomscrub.partition_by,
                storage_options=options,
                secret=dicomscrub.secret,
            )
        keys = sorted(partition_keys(frame))
        registered = _register_partitions(context, partitions_def, keys)
        metadata = manifest_metadata(frame, keys, manifest_url=dicomscrub.manifest)
        metadata["partitions_added"] = MetadataValue.int(registered)
        metadata["seconds"] = MetadataValue.float(round(time.perf_counter() - started, 3))
        context.log.info("manifest: %d rows in %d partitions", len(frame), len(keys))
        return MaterializeResult(metadata=metadata)

    @asset(
        key=DEIDENTIFIED,
        group_name=GROUP,
        kinds={"dicom"},
        partitions_def=partitions_def,
        backfill_policy=BACKFILL_POLICY,
        deps=[MANIFEST],
        description="De-identified DICOM files of one manifest partition "
        "(<output_root>/<partition>/...), written by dicomscrub's run_partition; "
        "the partition's audit is committed with them.",
    )
    def deidentified_dicom(
        context: AssetExecutionContext, dicomscrub: DicomScrubResource
    ) -> MaterializeResult[None]:
        key = context.partition_key
        result = dicomscrub.run_partition(key)
        summary = result.to_summary()
        metadata = partition_metadata(summary, preview=dicomscrub.preview_png(result))
        if "preview" in metadata and result.sample is not None:
            metadata["preview_of"] = location(result.sample[1])  # the output: a pseudonymized path
        if result.budget_exceeded:
            from dicomscrub.core.runner import PartitionFailedError

            try:
                result.raise_for_budget()
            except PartitionFailedError as exc:  # counts and codes only, no PHI
                raise Failure(description=str(exc), metadata=metadata) from None
        context.log.info(
            "partition %s: %d ok, %d failed, %d skipped",
            key,
            result.ok,
            result.failed,
            result.skipped,
        )
        return MaterializeResult(metadata=metadata)

    def _audit_asset(key: AssetKey, table: str, description: str) -> AssetsDefinition:
        @asset(
            key=key,
            group_name=GROUP,
            kinds={"parquet"},
            partitions_def=partitions_def,
            backfill_policy=BACKFILL_POLICY,
            deps=[DEIDENTIFIED],
            description=description,
        )
        def _audit(
            context: AssetExecutionContext, dicomscrub: DicomScrubResource
        ) -> MaterializeResult[None]:
            frame = dicomscrub.read_audit(table, context.partition_key)
            return MaterializeResult(
                metadata=audit_table_metadata(
                    table, frame, audit_root=dicomscrub.audit_root, partition=context.partition_key
                )
            )

        return _audit

    audit_files = _audit_asset(
        AUDIT_FILES,
        "files",
        "The `files` audit of one partition: one row per input file with status, error code, "
        "entity counts, timings and policy hash (Parquet under <audit_root>/files).",
    )
    audit_entities = _audit_asset(
        AUDIT_ENTITIES,
        "entities",
        "The `entities` audit of one partition: one row per detected or acted-on item, "
        "with keyed HMACs instead of values (Parquet under <audit_root>/entities).",
    )
    return [dicom_manifest, deidentified_dicom, audit_files, audit_entities]


def _register_partitions(
    context: AssetExecutionContext, partitions_def: PartitionsDefinition, keys: list[str]
) -> int:
    """Add new keys to dynamic partitions; for fixed ones, refuse keys they do not list."""
    if isinstance(partitions_def, DynamicPartitionsDefinition):
        name = partitions_def.name
        if name is None:
            raise Failure(description="dynamic partitions for dicomscrub need a name")
        known = set(context.instance.get_dynamic_partitions(name))
        new = [k for k in keys if k not in known]
        if new:
            context.instance.add_dynamic_partitions(name, new)
        return len(new)
    unknown = set(keys) - set(partitions_def.get_partition_keys())
    if unknown:
        raise Failure(
            description=f"the manifest has {len(unknown)} partition keys that the fixed "
            "partitions definition does not list; reload the definitions (they read the "
            "manifest when they load) or use dynamic partitions"
        )
    return 0
