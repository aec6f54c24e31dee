"""``make demo``: synthetic studies -> Dagster -> redacted DICOM, checks and a Parquet audit.

Everything happens under one folder (``demo/`` by default, git-ignored):

=============================  =========================================================
``demo/input``                 synthetic studies with planted PHI (header, free text,
                               burned-in text, multi-frame)
``demo/manifest.parquet``      the study manifest
``demo/dagster_home``          the Dagster instance (SQLite): runs, events, checks
``demo/output``                redacted files ``<partition>/<study>/<series>/<sop>.dcm``
``demo/audit``                 Parquet audit: ``files`` and ``entities``
``demo/previews``              before/after PNG of one redacted image per partition
``demo/demo-only-secret.txt``  the generated secret, when DICOMSCRUB_SECRET is unset
=============================  =========================================================

Each run starts afresh (input, output, audit and previews are recreated; the
secret and the Dagster instance with its run history are kept). Every
partition is materialized through Dagster (the shipped asset graph and
its blocking checks) on the embedded default instance. The secret comes from
``DICOMSCRUB_SECRET`` when set; otherwise a random demo-only secret is
generated into ``demo/`` and announced.

Run it with ``make demo`` or ``python -m dicomscrub.dagster_assets.demo``;
exit status 0 when every partition and every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SECRET_ENV = "DICOMSCRUB_SECRET"
DEMO_SECRET_FILE = "demo-only-secret.txt"
UI_COMMAND = ".venv/bin/dagster dev -m dicomscrub.dagster_assets.definitions"
_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    root = Path(args.dir).resolve()
    try:
        return _run(root, args)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # users never see a traceback
        if args.debug:
            raise
        print(
            f"demo: failed ({type(exc).__name__}: {_safe(exc)}); rerun with --debug for details",
            file=sys.stderr,
        )
        return 3


def _run(root: Path, args: argparse.Namespace) -> int:
    # Dagster reads DAGSTER_HOME when it is imported and when the instance loads.
    home = root / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    started = time.perf_counter()

    generated = _announce_secret(root)

    import pandas as pd
    from dagster import AssetSelection, DagsterInstance, EnvVar, materialize

    from dicomscrub.core.answer_key import DICOM_DIR
    from dicomscrub.core.audit import audit_summary
    from dicomscrub.core.manifest import partition_keys, read_manifest
    from dicomscrub.core.samples import generate_corpus

    from .assets import DEIDENTIFIED, MANIFEST
    from .definitions import build_definitions
    from .partitions import PARTITIONS_NAME
    from .resource import DicomScrubResource

    input_dir = root / "input"
    print(f"[1/4] generating synthetic studies in {_rel(input_dir)}")
    # a fresh start, except for the secret and the Dagster instance (its run history)
    for name in ("input", "output", "audit", "previews"):
        shutil.rmtree(root / name, ignore_errors=True)
    (root / "manifest.parquet").unlink(missing_ok=True)
    generate_corpus(
        str(input_dir),
        seed=args.seed,
        patients=args.patients,
        studies_per_patient=args.studies_per_patient,
    )
    dicom_dir = input_dir / DICOM_DIR  # the answer key stays next to it, out of the scan
    files = [p for p in dicom_dir.rglob("*") if p.is_file()]
    print(f"      {len(files)} DICOM files, {args.patients} patients")

    resource = DicomScrubResource(
        secret=EnvVar(SECRET_ENV),
        input=str(dicom_dir),
        manifest=str(root / "manifest.parquet"),
        output_root=str(root / "output"),
        audit_root=str(root / "audit"),
        policy=args.policy,
        workers=args.workers,
        # synthetic patients on a local instance: showing the original pixels is harmless here
        preview="before_after",
    )
    defs = build_definitions(resource)
    graph: list[Any] = [*(defs.assets or []), *(defs.asset_checks or [])]
    instance = DagsterInstance.get()

    print(f"[2/4] building the manifest (Dagster instance: {_rel(home)})")
    result = materialize(
        graph,
        instance=instance,
        resources=defs.resources,
        selection=[MANIFEST],
        run_config=_QUIET,
        raise_on_error=False,
    )
    if not result.success:
        print("demo: the manifest asset failed; see the run in the Dagster UI", file=sys.stderr)
        return 1
    keys = partition_keys(read_manifest(resource.manifest, scan_missing=False))
    for stale in set(instance.get_dynamic_partitions(PARTITIONS_NAME)) - set(keys):
        instance.delete_dynamic_partition(PARTITIONS_NAME, stale)  # from an earlier demo
    print(f"      {len(keys)} partitions (one per study)")

    print(f"[3/4] materializing {len(keys)} partitions with their blocking checks")
    all_ok = True
    previews = root / "previews"
    previews.mkdir()
    for key in keys:
        t0 = time.perf_counter()
        run = materialize(
            graph,
            instance=instance,
            resources=defs.resources,
            partition_key=key,
            selection=AssetSelection.assets(DEIDENTIFIED).downstream(),
            run_config=_QUIET,
            raise_on_error=False,
        )
        checks = {c.check_name: c.passed for c in run.get_asset_check_evaluations()}
        events = run.get_asset_materialization_events()
        for event in events:
            _save_preview(event.materialization.metadata, previews / f"{key}.png")
        ok = run.success and bool(checks) and all(checks.values())
        all_ok &= ok
        check_text = ", ".join(
            f"{name} {'passed' if passed else 'FAILED'}" for name, passed in sorted(checks.items())
        )
        print(
            f"      {key}: {'ok' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f}s "
            f"({len(events)} assets materialized; {check_text or 'checks did not run'})"
        )

    print("[4/4] audit summary (read with pandas)\n")
    print(audit_summary(resource.audit_root))
    entities = pd.read_parquet(root / "audit" / "entities")
    masked = entities[(entities["location"] == "pixel") & (entities["action"] == "masked")]
    print(f"\nburned-in text boxes masked: {len(masked)} on {masked['source'].nunique()} images")

    outputs = sorted((root / "output").rglob("*.dcm"))
    pngs = sorted(previews.glob("*.png"))
    audit = _rel(root / "audit")
    secret_hint = f'"$(cat {_rel(root / DEMO_SECRET_FILE)})"' if generated else f"${SECRET_ENV}"
    print()
    print(f"redacted files: {_rel(root / 'output')}/  ({len(outputs)} files)")
    print(f"audit:          {audit}/  (pandas.read_parquet('{audit}/entities'))")
    print(f"previews:       {_rel(previews)}/  ({len(pngs)} before/after PNGs)")
    print("Dagster UI:     the runs, checks and previews are in the instance; open it with")
    print(f"                DAGSTER_HOME={home} DICOMSCRUB_DATA={_rel(root)} \\")
    print(f"                DICOMSCRUB_INPUT={_rel(dicom_dir)} DICOMSCRUB_PREVIEW=before_after \\")
    print(f"                DICOMSCRUB_SECRET={secret_hint} \\")
    print(f"                {UI_COMMAND}")
    verdict = "all partitions and checks passed" if all_ok else "SOME PARTITIONS OR CHECKS FAILED"
    print(f"done in {time.perf_counter() - started:.0f}s: {verdict}")
    return 0 if all_ok else 1


def _announce_secret(root: Path) -> bool:
    """Use DICOMSCRUB_SECRET, or generate a demo-only secret into ``root`` and say so.

    Returns whether the demo-only secret is in use. The secret itself is never printed.
    """
    if os.environ.get(SECRET_ENV):
        print(f"secret: from {SECRET_ENV}")
        return False
    path = root / DEMO_SECRET_FILE
    verb = "reuses the" if path.is_file() else "generated a"
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(32) + "\n", encoding="utf-8")
        path.chmod(0o600)
    os.environ[SECRET_ENV] = path.read_text(encoding="utf-8").strip()
    print(
        f"secret: {SECRET_ENV} is not set, so this demo {verb} random DEMO-ONLY secret in "
        f"{_rel(path)}.\n        Never use it for real data: set {SECRET_ENV} (the same value "
        "on every worker) instead."
    )
    return True


def _save_preview(metadata: Any, path: Path) -> None:
    value = metadata.get("preview")
    text = getattr(value, "value", None) if value is not None else None
    marker = "base64,"
    if isinstance(text, str) and marker in text:
        data = text.split(marker, 1)[1].rstrip(")")
        path.write_bytes(base64.b64decode(data))


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _safe(exc: BaseException) -> str:
    """The message of our own errors (they hold no PHI); only the type for anything else."""
    from dicomscrub.core.errors import ConfigurationError, DeidError

    return str(exc) if isinstance(exc, ConfigurationError | DeidError) else "see --debug"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dicomscrub.dagster_assets.demo",
        description="Generate synthetic studies and de-identify them through Dagster.",
    )
    p.add_argument("--dir", default="demo", help="demo folder (default: %(default)s)")
    p.add_argument("--patients", type=int, default=3, help="synthetic patients (default: 3)")
    p.add_argument("--studies-per-patient", type=int, default=1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--policy", default="default", help="policy name or YAML path")
    p.add_argument("--workers", type=int, default=1, help="worker processes per partition")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


if __name__ == "__main__":
    raise SystemExit(main())
