"""Run one manifest partition: de-identify its files, lay them out by pseudonymized UID, audit.

:func:`run_partition` is the one function the CLI, the Airflow operator and the
Dagster assets call. For each usable manifest row of the partition it reads the
source (any fsspec URL), lets the engine de-identify it, writes the result
atomically to::

    <output_root>/<partition>/<study pseudo-UID>/<series pseudo-UID>/<SOP pseudo-UID>.dcm

and streams one ``files`` row (and the file's ``entities`` rows) into the
partition's audit (:mod:`dicomscrub.core.audit`). Then it removes anything under
``<output_root>/<partition>/`` this run did not produce (outputs of an earlier
run that are no longer valid, temporaries of a killed run) and commits the
audit last. A rerun, also after the process was killed midway, therefore ends
with the same outputs and audit rows (timings aside): pseudonyms are keyed
HMACs, so outputs are deterministic.

Work runs in a :class:`~dicomscrub.core.workers.WorkerPool` of ``workers``
processes (``forkserver`` on Linux, else ``spawn``: safe inside Airflow and
Dagster processes that run threads), started before the manifest is read so
that the two overlap. Each worker builds its
:class:`~dicomscrub.core.pipeline.Engine` once. At most ``2 * workers`` files are
in flight and results are recorded as they complete, so memory does not grow
with the partition and a slow file does not idle the other workers. A file
that kills its worker process, or hangs past ``file_timeout``, is recorded as
failed (``worker_crashed``, ``worker_timeout``) and the run goes on.
``workers=1`` runs in-process (no crash isolation, no time limit).

Examples
--------
>>> r = PartitionResult(partition="s-1", files=4, counts={"ok": 3, "failed": 1, "skipped": 0})
>>> r.failed_fraction, r.budget_exceeded
(0.25, True)
>>> PartitionResult(partition="s-1", files=4, counts={"ok": 3, "failed": 1},
...                 max_failed_fraction=0.25).budget_exceeded
False
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import ConfigurationError, ErrorCode
from .policy import Policy
from .results import FileResult
from .storage import (
    filesystem,
    join,
    list_files,
    remove_empty_dirs,
    remove_files,
    validate_partition_key,
)
from .workers import DEFAULT_FILE_TIMEOUT, Task, WorkerPool, failed, run_here

if TYPE_CHECKING:
    import argparse

    import pandas as pd

# pandas and pyarrow (via .manifest and .audit) are imported inside the functions, after the
# worker pool has started: the fork server's imports then overlap with theirs (seconds each).

log = logging.getLogger(__name__)

__all__ = ["PartitionFailedError", "PartitionResult", "run_cli", "run_partition"]

_SECRET_ENV = "DICOMSCRUB_SECRET"
_STEPS = ("read", "deidentify", "encode", "write")


class PartitionFailedError(RuntimeError):
    """A partition's failed-file fraction is over its failure budget.

    The message names the partition, counts and error codes only (no PHI).
    ``summary`` is :meth:`PartitionResult.to_summary`.
    """

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class PartitionResult:
    """What happened to one partition. Nothing in it is PHI except ``sample``.

    Attributes
    ----------
    partition
        The partition key.
    files
        Manifest rows of the partition (each has exactly one ``files`` audit row).
    counts
        Files by status: ``ok``, ``failed``, ``skipped``.
    entities_by_type
        Audit entity rows by entity type (including rows carried over by ``resume``).
    entities_by_location
        Audit entity rows by location (``header``, ``pixel``).
    error_codes
        Failed files by error code.
    frames
        Frames in the written outputs.
    pixels_changed
        Written files whose pixel data was changed (masked).
    output
        The partition's output folder ``<output_root>/<partition>``.
    audit
        The audit root.
    audit_files, audit_entities
        The two Parquet files of this partition.
    seconds
        Wall time of the run.
    timings
        Seconds per engine step, summed over files (``read``, ``deidentify``,
        ``encode``, ``write``).
    max_failed_fraction
        The failure budget the run was given.
    stale_removed
        Files removed from the output folder because this run did not produce
        them (earlier outputs no longer valid, temporaries of a killed run).
    policy_hash, engine_version, run_id
        As recorded in every ``files`` row.
    pool_start_seconds
        Seconds from starting the worker pool to the first worker answering
        (0 for ``workers=1``).
    pool_restarts
        Times the pool was rebuilt because a worker process died.
    sample
        ``(source, output)`` of one written file, preferring one whose pixels
        changed, for a before/after preview. The source path may hold PHI: it
        is not part of :meth:`to_summary`.
    """

    partition: str
    files: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    entities_by_type: dict[str, int] = field(default_factory=dict)
    entities_by_location: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    frames: int = 0
    pixels_changed: int = 0
    output: str = ""
    audit: str = ""
    audit_files: str = ""
    audit_entities: str = ""
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    max_failed_fraction: float = 0.0
    stale_removed: int = 0
    policy_hash: str = ""
    engine_version: str = __version__
    run_id: str = ""
    sample: tuple[str, str] | None = None
    pool_start_seconds: float = 0.0
    pool_restarts: int = 0

    @property
    def ok(self) -> int:
        """Files written."""
        return self.counts.get("ok", 0)

    @property
    def failed(self) -> int:
        """Files that could not be de-identified (not written)."""
        return self.counts.get("failed", 0)

    @property
    def skipped(self) -> int:
        """Files skipped by ``resume`` (unchanged since an earlier success)."""
        return self.counts.get("skipped", 0)

    @property
    def failed_fraction(self) -> float:
        """``failed / files`` (0 for an empty partition)."""
        return self.failed / self.files if self.files else 0.0

    @property
    def budget_exceeded(self) -> bool:
        """Whether ``failed_fraction`` is over ``max_failed_fraction``."""
        return self.failed_fraction > self.max_failed_fraction

    def to_summary(self) -> dict[str, Any]:
        """A small JSON-safe dict for XCom or Dagster metadata (no PHI).

        Examples
        --------
        >>> import json
        >>> s = PartitionResult(partition="s-1", files=1, counts={"ok": 1}).to_summary()
        >>> json.loads(json.dumps(s))["counts"]
        {'ok': 1, 'failed': 0, 'skipped': 0}
        """
        return {
            "partition": self.partition,
            "files": self.files,
            "counts": {s: self.counts.get(s, 0) for s in ("ok", "failed", "skipped")},
            "entities_by_type": dict(sorted(self.entities_by_type.items())),
            "entities_by_location": dict(sorted(self.entities_by_location.items())),
            "error_codes": dict(sorted(self.error_codes.items())),
            "frames": self.frames,
            "pixels_changed": self.pixels_changed,
            "failed_fraction": round(self.failed_fraction, 6),
            "max_failed_fraction": self.max_failed_fraction,
            "budget_exceeded": self.budget_exceeded,
            "output": self.output,
            "audit": self.audit,
            "audit_files": self.audit_files,
            "audit_entities": self.audit_entities,
            "seconds": round(self.seconds, 3),
            "files_per_second": round(self.files / self.seconds, 3) if self.seconds else 0.0,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "stale_removed": self.stale_removed,
            "pool_start_seconds": round(self.pool_start_seconds, 3),
            "pool_restarts": self.pool_restarts,
            "policy_hash": self.policy_hash,
            "engine_version": self.engine_version,
            "run_id": self.run_id,
        }

    def raise_for_budget(self) -> None:
        """Raise :class:`PartitionFailedError` when the failure budget is exceeded."""
        if self.budget_exceeded:
            codes = ", ".join(f"{c}={n}" for c, n in sorted(self.error_codes.items()))
            raise PartitionFailedError(
                f"partition {self.partition}: {self.failed} of {self.files} files failed "
                f"({self.failed_fraction:.1%} > budget {self.max_failed_fraction:.1%}; {codes}); "
                f"see the files audit under {self.audit}",
                self.to_summary(),
            )


# --- the partition run ---------------------------------------------------------------------
def _resolve_secret(secret: str | None) -> str:
    if secret is None:
        secret = os.environ.get(_SECRET_ENV) or None
    if not secret:
        raise ConfigurationError(f"no pseudonymization secret: pass secret= or set {_SECRET_ENV}")
    return secret


def _previous_successes(
    audit_root: str, partition: str, policy_hash: str, storage_options: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """``source -> files row`` of earlier ok/skipped rows made with the same policy and engine."""
    from .audit import read_partition

    previous = read_partition(audit_root, "files", partition, storage_options=storage_options)
    if previous is None:
        return {}
    good = previous[
        previous["status"].isin(["ok", "skipped"])
        & previous["output"].notna()
        & (previous["policy_hash"] == policy_hash)
        & (previous["engine_version"] == __version__)
    ]
    return {
        str(row["source"]): {str(k): v for k, v in row.items()} for row in good.to_dict("records")
    }


def run_partition(
    manifest: pd.DataFrame | str | os.PathLike[str],
    partition_key: str,
    output_root: str,
    audit_root: str,
    policy: Policy | str | dict[str, Any] | None = None,
    secret: str | None = None,
    workers: int = 1,
    *,
    max_failed_fraction: float = 0.0,
    resume: bool = False,
    storage_options: dict[str, Any] | None = None,
    progress: bool = False,
    pool: WorkerPool | None = None,
    file_timeout: float | None = DEFAULT_FILE_TIMEOUT,
) -> PartitionResult:
    """De-identify one manifest partition and replace its audit.

    Parameters
    ----------
    manifest
        Manifest path/URL (CSV or Parquet) or DataFrame (see :mod:`dicomscrub.core.manifest`).
    partition_key
        The partition to run.
    output_root, audit_root
        Roots (paths or fsspec URLs) for outputs and the Parquet audit.
    policy
        A :class:`~dicomscrub.core.policy.Policy`, built-in name, YAML path or dict.
    secret
        The pseudonymization secret; ``None`` reads ``DICOMSCRUB_SECRET``.
    workers
        Worker processes; 1 runs in-process.
    max_failed_fraction
        Failure budget: the result's ``budget_exceeded`` is true when more than
        this fraction of files failed. The audit is written either way.
    resume
        Skip files whose source SHA-256, policy hash and engine version match an
        earlier ``ok``/``skipped`` row of this partition's audit and whose output
        still exists. They get status ``skipped`` (their entity rows are carried over).
    storage_options
        Passed to fsspec for the manifest, sources, outputs and audit.
    progress
        Show a progress bar (tqdm) on stderr.
    pool
        A running :class:`~dicomscrub.core.workers.WorkerPool` built with the same
        policy and secret, to share one pool between partitions (``workers`` is
        then ignored; the pool stays open). By default a pool of ``workers``
        processes is started for this partition and closed at its end.
    file_timeout
        Seconds a file may run in the pool this call starts (None: no limit); one
        that runs over, also when retried alone, fails with ``worker_timeout``.
        A shared ``pool`` keeps its own limit; ``workers=1`` has none.

    Returns
    -------
    PartitionResult

    Raises
    ------
    ConfigurationError
        No secret, an invalid policy or partition key, a partition with no rows,
        or sources inside the partition's output folder. Raised before any file
        is touched.
    """
    started = time.perf_counter()
    validate_partition_key(partition_key, allow_date_like=True)
    if not 0.0 <= max_failed_fraction <= 1.0:
        raise ConfigurationError("max_failed_fraction must be between 0 and 1")
    if workers < 1:
        raise ConfigurationError("workers must be at least 1")
    secret = _resolve_secret(secret)
    policy_obj = Policy.load(policy)
    policy_hash = policy_obj.policy_hash()
    own_pool = None
    if pool is None and workers > 1:
        # The workers start now (imports, engine, models) while this process reads the manifest.
        pool = own_pool = WorkerPool(policy_obj, secret, workers, file_timeout=file_timeout)
    elif pool is not None and not pool.serves(policy_obj, secret):
        raise ConfigurationError("the worker pool was started with another policy or secret")
    restarts = pool.restarts if pool is not None else 0
    with own_pool or nullcontext():
        from .audit import PartitionAuditWriter
        from .manifest import read_manifest

        rows = read_manifest(
            manifest, storage_options=storage_options, secret=secret, partition=partition_key
        )
        if rows.empty:
            raise ConfigurationError("the partition has no usable rows in the manifest")
        partition_dir = join(output_root, partition_key)
        inside = partition_dir if "://" in partition_dir else os.path.abspath(partition_dir)
        if any(str(p).startswith(inside + "/") for p in rows["path"]):
            raise ConfigurationError("sources lie inside the partition's output folder")

        previous = (
            _previous_successes(audit_root, partition_key, policy_hash, storage_options)
            if resume
            else {}
        )
        # Duplicate SOPInstanceUIDs would map to one output path: keep the first, fail the others.
        duplicate = rows["sop_uid"].ne("") & rows["sop_uid"].duplicated(keep="first")
        retain_uids = policy_obj.options.retain_uids
        tasks = (
            Task(
                source=str(row.path),
                partition_dir=partition_dir,
                originals=(str(row.study_uid), str(row.series_uid), str(row.sop_uid)),
                retain_uids=retain_uids,
                storage_options=storage_options,
                previous_sha=previous.get(str(row.path), {}).get("source_sha256"),
                previous_output=previous.get(str(row.path), {}).get("output"),
            )
            for row in rows[~duplicate].itertuples(index=False)
        )
        sizes = dict(zip(rows["path"].astype(str), rows["size"], strict=True))

        run_id = uuid.uuid4().hex
        result = PartitionResult(
            partition=partition_key,
            files=len(rows),
            output=partition_dir,
            audit=audit_root,
            max_failed_fraction=max_failed_fraction,
            policy_hash=policy_hash,
            run_id=run_id,
        )
        writer = PartitionAuditWriter(audit_root, partition_key, storage_options, run_id=run_id)
        counts: Counter[str] = Counter()
        by_type: Counter[str] = Counter()
        by_location: Counter[str] = Counter()
        codes: Counter[str] = Counter()
        timings: dict[str, float] = dict.fromkeys(_STEPS, 0.0)
        produced: set[str] = set()
        carried: set[str] = set()

        sample_changed = False

        def record(file_result: FileResult) -> None:
            nonlocal sample_changed
            now = dt.datetime.now(dt.UTC)
            counts[file_result.status] += 1
            if file_result.status == "skipped":
                earlier = previous[file_result.source]
                carried.add(file_result.source)
                writer.add_row(_carried_row(earlier, file_result, run_id, now))
                file_result.frames = int(earlier.get("frames") or 0)
                file_result.pixels_changed = bool(earlier.get("pixels_changed"))
            else:
                writer.add(
                    file_result,
                    source_size=int(sizes.get(file_result.source, -1)),
                    policy_hash=policy_hash,
                    engine_version=__version__,
                    run_id=run_id,
                    processed_at=now,
                )
            if file_result.status == "failed":
                codes[file_result.error_code or ErrorCode.INTERNAL_ERROR.value] += 1
            elif file_result.output:
                produced.add(file_result.output)
                if result.sample is None or (file_result.pixels_changed and not sample_changed):
                    result.sample = (file_result.source, file_result.output)
                    sample_changed = file_result.pixels_changed
            for entity in file_result.entities:
                by_type[entity.entity_type] += 1
                by_location[entity.location] += 1
            for step in _STEPS:
                timings[step] += file_result.timings.get(step, 0.0)
            result.frames += file_result.frames
            result.pixels_changed += int(file_result.pixels_changed)

        try:
            for dup in rows[duplicate].itertuples(index=False):
                record(
                    failed(
                        str(dup.path),
                        ErrorCode.INVALID_VALUE,
                        "duplicate SOPInstanceUID in the partition; the first file is kept",
                    )
                )
            results = pool.run(tasks) if pool else run_here(tasks, policy_obj, secret)
            if progress:
                from tqdm import tqdm  # type: ignore[import-untyped]

                results = tqdm(
                    results,
                    total=len(rows) - int(duplicate.sum()),
                    unit="file",
                    desc=partition_key,
                    file=sys.stderr,
                )
            for file_result in results:
                record(file_result)
            if carried:
                for table in _carried_entities(audit_root, partition_key, carried, storage_options):
                    writer.add_entity_table(table)
                    for name, column in (("entity_type", by_type), ("location", by_location)):
                        column.update(Counter(table.column(name).to_pylist()))
            result.stale_removed = _remove_stale(partition_dir, produced, storage_options)
            paths = writer.commit()
        except BaseException:
            writer.abort()
            raise
        result.counts = dict(counts)
        result.entities_by_type = dict(by_type)
        result.entities_by_location = dict(by_location)
        result.error_codes = dict(codes)
        result.timings = {step: timings[step] for step in _STEPS}
        result.audit_files = paths["files"]
        result.audit_entities = paths["entities"]
        if pool is not None:
            result.pool_start_seconds = (own_pool.start_seconds or 0.0) if own_pool else 0.0
            result.pool_restarts = pool.restarts - restarts
        result.seconds = time.perf_counter() - started
        log.info(
            "partition %s: %d files, %d ok, %d failed, %d skipped in %.1f s",
            partition_key,
            result.files,
            result.ok,
            result.failed,
            result.skipped,
            result.seconds,
        )
        return result


def _carried_row(
    previous: dict[str, Any], skipped: FileResult, run_id: str, now: dt.datetime
) -> dict[str, Any]:
    """The ``files`` row of a file skipped by ``resume``: the earlier row, re-stamped."""
    import pandas as pd

    row = {k: None if pd.isna(v) else v for k, v in previous.items() if k != "partition"}
    row.update(
        status="skipped",
        error_code=None,
        error_message=None,
        run_id=run_id,
        processed_at=now,
        seconds_read=skipped.timings.get("read"),
        seconds_total=skipped.timings.get("total"),
    )
    for step in ("deidentify", "encode", "write"):
        row[f"seconds_{step}"] = None
    return row


def _carried_entities(
    audit_root: str, partition: str, sources: set[str], storage_options: dict[str, Any] | None
) -> Iterator[Any]:
    """Earlier entity rows of ``sources``, batch by batch (pyarrow tables)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .audit import partition_path

    fs = filesystem(audit_root, storage_options)
    path = partition_path(audit_root, "entities", partition)
    if not fs.exists(path):
        return
    wanted = pa.array(sorted(sources), type=pa.string())
    with fs.open(path, "rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=8192):
            table = pa.Table.from_batches([batch])
            kept = table.filter(pc.is_in(table.column("source"), value_set=wanted))
            if kept.num_rows:
                yield kept


def _remove_stale(
    partition_dir: str, produced: set[str], storage_options: dict[str, Any] | None
) -> int:
    """Remove files under ``partition_dir`` this run did not produce; return how many."""
    fs = filesystem(partition_dir, storage_options)
    stale = [p for p in list_files(fs, partition_dir) if p not in produced]
    remove_files(fs, stale)
    remove_empty_dirs(fs, partition_dir)
    if stale:
        log.info("removed %d stale files from the partition's output folder", len(stale))
    return len(stale)


# --- command line ----------------------------------------------------------------------------
def _table(results: list[PartitionResult]) -> str:
    import pandas as pd

    frame = pd.DataFrame(
        [
            {
                "partition": r.partition,
                "files": r.files,
                "ok": r.ok,
                "failed": r.failed,
                "skipped": r.skipped,
                "header ent.": r.entities_by_location.get("header", 0),
                "pixel ent.": r.entities_by_location.get("pixel", 0),
                "seconds": round(r.seconds, 1),
                "budget": "EXCEEDED" if r.budget_exceeded else "ok",
            }
            for r in results
        ]
    )
    return frame.to_string(index=False)


def run_cli(args: argparse.Namespace) -> int:
    """``dicomscrub run MANIFEST --output OUT --audit AUDIT (--partition KEY ... | --all)``.

    With ``--workers N`` (N > 1) one pool of worker processes serves every
    partition. Exit status: 0 when every partition is within its failure
    budget, 1 otherwise.
    """
    if args.ephemeral_secret:
        secret = secrets.token_hex(32)
        log.warning("using an ephemeral secret: pseudonyms will not match any other run")
    else:
        secret = os.environ.get(args.secret_env) or ""
        if not secret:
            raise ConfigurationError(
                f"no pseudonymization secret: set {args.secret_env} or pass --ephemeral-secret"
            )
    policy = Policy.load(args.policy)
    pool = (
        WorkerPool(policy, secret, args.workers, file_timeout=args.file_timeout)
        if args.workers > 1
        else None
    )
    with pool or nullcontext():
        from .manifest import partition_keys, read_manifest

        manifest = read_manifest(args.manifest, secret=secret)
        keys: list[str] = partition_keys(manifest) if args.all else list(args.partition)
        unknown = set(keys) - set(partition_keys(manifest))
        if unknown:
            raise ConfigurationError(f"{len(unknown)} requested partitions are not in the manifest")
        results = [
            run_partition(
                manifest,
                key,
                args.output,
                args.audit,
                policy=policy,
                secret=secret,
                workers=args.workers,
                max_failed_fraction=args.max_failed_fraction,
                resume=args.resume,
                progress=not args.quiet,
                pool=pool,
            )
            for key in keys
        ]
    print(_table(results))
    print(f"outputs under {args.output}; audit under {args.audit}")
    return 1 if any(r.budget_exceeded for r in results) else 0
