"""run_partition end to end: layout, audit, idempotence, resume, budget, SIGKILL, S3, CLI.

The engine is real (header step, text detection with the spaCy model); most
tests use small generated studies and a ``pixels: off`` policy because pixels
are not the point here. The slow tests add a process pool, a SIGKILL midway,
and files with burned-in text.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pydicom
import pytest
from batch_data import GeneratedFile, make_studies

from dicomscrub.core.audit import VOLATILE_FILE_COLUMNS, check_partition, read_audit
from dicomscrub.core.cli import main
from dicomscrub.core.errors import ConfigurationError
from dicomscrub.core.manifest import build_manifest, partition_keys, write_manifest
from dicomscrub.core.policy import Policy
from dicomscrub.core.runner import PartitionFailedError, run_partition
from dicomscrub.core.storage import filesystem, list_files
from dicomscrub.core.workers import CRASH_HOOK_ENV, HANG_HOOK_ENV, WorkerPool
from support import TEST_SECRET

HEADER_ONLY = {"pixels": {"mode": "off"}}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[GeneratedFile]]:
    """2 patients x 1 study x 2 series x 2 instances, in folders named after the patient."""
    root = tmp_path_factory.mktemp("runner-in")
    files = make_studies(root, patients=2)
    for f in files:  # source folder names carry PHI: it must not reach outputs or keys
        family = f.patient_name.split("^")[0]
        named = root / family / f.path.relative_to(root)
        named.parent.mkdir(parents=True, exist_ok=True)
        f.path.rename(named)
    files = [
        GeneratedFile(
            root / f.patient_name.split("^")[0] / f.path.relative_to(root),
            f.patient_name,
            f.patient_id,
            f.study_uid,
            f.series_uid,
            f.sop_uid,
            f.study_date,
        )
        for f in files
    ]
    return root, files


@pytest.fixture(scope="module")
def manifest(corpus: tuple[Path, list[GeneratedFile]]) -> pd.DataFrame:
    return build_manifest(str(corpus[0]), workers=2, secret=TEST_SECRET)


def _phi(files: list[GeneratedFile]) -> list[str]:
    values = {v for f in files for v in f.phi if v}
    values.update(f.series_uid for f in files)
    values.add(files[0].patient_name)
    return sorted(values)


def _run_all(manifest: pd.DataFrame | str, out: Path | str, audit: Path | str, **kw: Any) -> list:  # type: ignore[type-arg]
    kw.setdefault("policy", HEADER_ONLY)
    keys = partition_keys(manifest, storage_options=kw.get("storage_options"))
    return [run_partition(manifest, key, str(out), str(audit), **kw) for key in keys]


def _snapshot(out: str, audit: str, storage_options: dict[str, Any] | None = None) -> dict:  # type: ignore[type-arg]
    """Outputs (relative path -> sha256) and audit rows, without timings and run ids."""
    fs = filesystem(out, storage_options)
    outputs = {
        p[len(out) :]: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in list_files(fs, out)
    }
    files = read_audit(audit, "files", storage_options=storage_options)
    files = files.drop(columns=list(VOLATILE_FILE_COLUMNS))
    files["output"] = files["output"].str.slice(len(out))
    files = files.sort_values("source").reset_index(drop=True)
    entities = read_audit(audit, "entities", storage_options=storage_options)
    entities["box"] = entities["box"].map(lambda b: None if b is None else tuple(b))
    entities = entities.sort_values(list(entities.columns)).reset_index(drop=True)
    return {"outputs": outputs, "files": files, "entities": entities}


def _assert_same(a: dict, b: dict) -> None:  # type: ignore[type-arg]
    assert a["outputs"] == b["outputs"]
    pd.testing.assert_frame_equal(a["files"], b["files"])
    pd.testing.assert_frame_equal(a["entities"], b["entities"])


@pytest.fixture(scope="module")
def first_run(
    manifest: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, list]]:  # type: ignore[type-arg]
    base = tmp_path_factory.mktemp("runner-out")
    out, audit = base / "out", base / "audit"
    mp = pytest.MonkeyPatch()
    mp.setenv("DICOMSCRUB_SECRET", TEST_SECRET)
    try:
        yield out, audit, _run_all(manifest, out, audit)
    finally:
        mp.undo()


def test_every_manifest_row_once_and_outputs_parse(
    manifest: pd.DataFrame,
    first_run: tuple[Path, Path, list],  # type: ignore[type-arg]
) -> None:
    out, audit, results = first_run
    usable = manifest[manifest["reject_reason"] == ""]
    files = pd.read_parquet(audit / "files")  # plain pandas on the hive dataset
    assert sorted(files["source"]) == sorted(usable["path"])
    assert files["source"].is_unique
    merged = files.merge(usable[["path", "partition"]], left_on="source", right_on="path")
    assert (merged["partition_x"].astype(str) == merged["partition_y"]).all()
    assert set(files["status"]) == {"ok"}
    assert sum(r.ok for r in results) == len(usable)
    for row in files.itertuples():
        ds = pydicom.dcmread(row.output)
        assert ds.SOPInstanceUID == row.output_sop_uid
        rel = Path(row.output).relative_to(out).parts
        assert rel == (
            str(row.partition),
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            f"{ds.SOPInstanceUID}.dcm",
        )
        assert row.source_sha256 == hashlib.sha256(Path(row.source).read_bytes()).hexdigest()
        assert row.header_entities > 0
        assert row.pixel_entities == 0
    produced = sorted(str(p) for p in out.rglob("*") if p.is_file())
    assert produced == sorted(files["output"])


def test_header_entities_are_audited_without_phi(
    corpus: tuple[Path, list[GeneratedFile]],
    first_run: tuple[Path, Path, list],  # type: ignore[type-arg]
) -> None:
    out, audit, results = first_run
    entities = pd.read_parquet(audit / "entities")
    names = entities[entities["keyword"] == "PatientName"]
    assert len(names) == len(corpus[1])
    assert set(names["location"]) == {"header"}
    assert (names["value_hmac"].str.len() == 64).all()
    assert "raw_text" not in entities.columns
    phi = _phi(corpus[1])
    files = pd.read_parquet(audit / "files")
    # the source column is the input path as given (here: folders named after patients)
    for table in (entities.drop(columns=["source"]), files.drop(columns=["source"])):
        text = table.astype(str).to_csv()
        assert not any(value in text for value in phi)
    for path in out.rglob("*"):
        assert not any(value in str(path.relative_to(out)) for value in phi)
    for result in results:
        text = json.dumps(result.to_summary())
        assert not any(value in text for value in phi)
        assert result.entities_by_type.get("PERSON", 0) > 0
        assert result.entities_by_location == {"header": sum(result.entities_by_type.values())}


def test_rerun_is_identical_and_removes_stale_files(
    manifest: pd.DataFrame,
    first_run: tuple[Path, Path, list],  # type: ignore[type-arg]
) -> None:
    out, audit, _ = first_run
    before = _snapshot(str(out), str(audit))
    key = partition_keys(manifest)[0]
    junk = [out / key / "2.25.1" / "old.dcm", out / key / ".x.dcm.tmp-123", out / key / "y.tmp"]
    for path in junk:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left over by an earlier run")
    (audit / "files" / f"partition={key}" / ".part-0.parquet.tmp-abc").write_bytes(b"half")
    results = _run_all(manifest, out, audit)
    assert results[0].stale_removed == len(junk)
    after = _snapshot(str(out), str(audit))
    _assert_same(before, after)
    assert sorted(p.name for p in (audit / "files" / f"partition={key}").iterdir()) == [
        "part-0.parquet"
    ]
    assert not (out / key / "2.25.1").exists()


def test_resume_skips_unchanged_files_and_keeps_their_rows(
    manifest: pd.DataFrame,
    first_run: tuple[Path, Path, list],  # type: ignore[type-arg]
) -> None:
    out, audit, _ = first_run
    before = _snapshot(str(out), str(audit))
    key = partition_keys(manifest)[0]
    output = read_audit(str(audit), "files", partition=key)["output"].iloc[0]
    Path(output).unlink()  # a missing output is redone even with resume
    results = _run_all(manifest, out, audit, resume=True)
    assert results[0].counts == {"skipped": results[0].files - 1, "ok": 1}
    assert all(r.counts == {"skipped": r.files} for r in results[1:])
    after = _snapshot(str(out), str(audit))
    assert after["outputs"] == before["outputs"]
    pd.testing.assert_frame_equal(after["entities"], before["entities"])
    changed = after["files"]["status"] != before["files"]["status"]
    assert set(after["files"].loc[changed, "status"]) == {"skipped"}
    unchanged_columns = [c for c in before["files"].columns if c != "status"]
    pd.testing.assert_frame_equal(
        after["files"][unchanged_columns], before["files"][unchanged_columns]
    )
    assert results[1].entities_by_type == first_run[2][1].entities_by_type
    # a different policy invalidates every earlier success
    other = run_partition(
        manifest, key, str(out), str(audit), policy={**HEADER_ONLY, "name": "x"}, resume=True
    )
    assert other.counts == {"ok": other.files}
    _run_all(manifest, out, audit)  # leave the module's run as it was


def test_check_partition_passes_then_catches_problems(
    manifest: pd.DataFrame,
    first_run: tuple[Path, Path, list],  # type: ignore[type-arg]
) -> None:
    out, audit, _ = first_run
    key = partition_keys(manifest)[1]
    check = check_partition(manifest, key, str(out), str(audit))
    assert check.passed, check.to_summary()
    assert check.files_scanned == check.manifest_rows == 4
    stray = out / key / "stray.dcm"
    stray.write_bytes(b"x")
    try:
        assert check_partition(manifest, key, str(out), str(audit)).stale_outputs == 1
    finally:
        stray.unlink()
    dropped = manifest[manifest["path"] != manifest[manifest["partition"] == key]["path"].iloc[0]]
    extra = check_partition(dropped, key, str(out), str(audit), rescan_outputs=False)
    assert extra.unexpected_rows == 1
    assert not extra.accounted_ok
    json.dumps(extra.to_summary())


def test_failure_budget_and_failed_rows(
    corpus: tuple[Path, list[GeneratedFile]], tmp_path: Path
) -> None:
    files = corpus[1]
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(files[0].path.read_bytes()[:400])  # truncated inside the header
    # A bring-your-own manifest: the unreadable file keeps its partition and fails in the run.
    manifest = pd.DataFrame(
        {"path": [str(f.path) for f in files[:3]] + [str(broken)], "partition": "batch-1"}
    )
    out, audit = tmp_path / "out", tmp_path / "audit"
    result = run_partition(manifest, "batch-1", str(out), str(audit), policy=HEADER_ONLY)
    assert result.counts == {"ok": 3, "failed": 1}
    assert result.budget_exceeded
    with pytest.raises(PartitionFailedError) as info:
        result.raise_for_budget()
    assert "1 of 4 files failed" in str(info.value)
    assert not any(v in str(info.value) for v in _phi(files))
    rows = read_audit(str(audit), "files").set_index("source")
    failed = rows.loc[str(broken)]
    assert failed["status"] == "failed"
    assert failed["error_code"] in {"truncated", "not_dicom", "invalid_value"}
    assert pd.isna(failed["output"])
    assert failed["source_sha256"] == hashlib.sha256(broken.read_bytes()).hexdigest()
    relaxed = run_partition(
        manifest, "batch-1", str(out), str(audit), policy=HEADER_ONLY, max_failed_fraction=0.25
    )
    assert not relaxed.budget_exceeded
    relaxed.raise_for_budget()


def test_configuration_errors_come_before_any_work(
    manifest: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = partition_keys(manifest)[0]
    args = (manifest, key, str(tmp_path / "o"), str(tmp_path / "a"))
    with pytest.raises(ConfigurationError, match="no usable rows"):
        run_partition(manifest, "s-nothere", str(tmp_path / "o"), str(tmp_path / "a"))
    with pytest.raises(ConfigurationError):
        run_partition(*args, max_failed_fraction=2.0)
    with pytest.raises(ConfigurationError):
        run_partition(manifest, "../x", str(tmp_path / "o"), str(tmp_path / "a"))
    inside = pd.DataFrame({"path": [str(tmp_path / "o" / "k1" / "a.dcm")], "partition": "k1"})
    with pytest.raises(ConfigurationError, match="inside the partition's output folder"):
        run_partition(inside, "k1", str(tmp_path / "o"), str(tmp_path / "a"))
    monkeypatch.delenv("DICOMSCRUB_SECRET")
    with pytest.raises(ConfigurationError, match="DICOMSCRUB_SECRET"):
        run_partition(*args)
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "a").exists()


def test_duplicate_sop_instances_fail_after_the_first(
    corpus: tuple[Path, list[GeneratedFile]], tmp_path: Path
) -> None:
    files = corpus[1]
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(files[0].path.read_bytes())
    manifest = build_manifest(str(tmp_path), partition_by="study")
    extra = build_manifest(str(files[0].path.parent))
    both = pd.concat([extra, manifest], ignore_index=True)
    key = str(manifest["partition"].iloc[0])
    result = run_partition(both, key, str(tmp_path / "o"), str(tmp_path / "a"), policy=HEADER_ONLY)
    assert result.error_codes == {"invalid_value": 1}
    rows = read_audit(str(tmp_path / "a"), "files")
    assert rows.loc[rows["source"] == str(copy), "error_message"].iloc[0].startswith("duplicate")


def test_cli_run_and_audit_summary(
    manifest: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.parquet"
    write_manifest(manifest, str(path))
    policy = tmp_path / "policy.yaml"
    policy.write_text('pixels:\n  mode: "off"\n')
    out, audit = tmp_path / "out", tmp_path / "audit"
    code = main(
        ["-q", "run", str(path), "--output", str(out), "--audit", str(audit), "--all",
         "--policy", str(policy)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    for key in partition_keys(manifest):
        assert key in printed
    assert main(["audit", "summary", str(audit)]) == 0
    summary = capsys.readouterr().out
    assert "TOTAL" in summary
    assert "PERSON" in summary
    assert "8 files in 2 partitions" in summary
    one = partition_keys(manifest)[0]
    code = main(
        ["-q", "run", str(path), "--output", str(out), "--audit", str(audit),
         "--partition", one, "--resume", "--policy", str(policy)]
    )  # fmt: skip
    assert code == 0
    assert main(["run", str(path), "--output", "o", "--audit", "a", "--partition", "s-x"]) == 2


def test_s3_round_trip_on_loopback(
    corpus: tuple[Path, list[GeneratedFile]], s3_server: Any, s3_bucket: str
) -> None:
    import s3fs

    options = s3_server.storage_options
    fs = s3fs.S3FileSystem(**options)
    root, files = corpus
    for f in files[:4]:
        fs.put_file(str(f.path), f"{s3_bucket}/in/{f.path.relative_to(root).as_posix()}")
    manifest = build_manifest(f"{s3_bucket}/in", storage_options=options)
    write_manifest(manifest, f"{s3_bucket}/manifest.csv", storage_options=options)
    out, audit = f"{s3_bucket}/out", f"{s3_bucket}/audit"
    results = _run_all(f"{s3_bucket}/manifest.csv", out, audit, storage_options=options)
    assert sum(r.ok for r in results) == 4
    files_table = pd.read_parquet(f"{audit}/files", storage_options=options)
    assert sorted(files_table["source"]) == sorted(manifest["path"])
    assert len(pd.read_parquet(f"{audit}/entities", storage_options=options)) > 0
    for output in files_table["output"]:
        with fs.open(output, "rb") as handle:
            assert pydicom.dcmread(handle).PatientIdentityRemoved == "YES"
    before = _snapshot(out, audit, options)
    _run_all(f"{s3_bucket}/manifest.csv", out, audit, storage_options=options)
    _assert_same(before, _snapshot(out, audit, options))
    check = check_partition(
        f"{s3_bucket}/manifest.csv", results[0].partition, out, audit, storage_options=options
    )
    assert check.passed, check.to_summary()


# --- slow: process pool, SIGKILL midway, burned-in pixels ----------------------------------------
@pytest.mark.slow
def test_two_workers_match_one(
    manifest: pd.DataFrame,
    first_run: tuple[Path, Path, list],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    """One pool (forkserver, 2 workers) shared by both partitions writes what the in-process
    run wrote."""
    out, audit = tmp_path / "out", tmp_path / "audit"
    policy = Policy.load(HEADER_ONLY)
    keys = partition_keys(manifest)
    with WorkerPool(policy, TEST_SECRET, 2) as pool:
        results = [
            run_partition(manifest, key, str(out), str(audit), policy=policy, pool=pool)
            for key in keys
        ]
        with pytest.raises(ConfigurationError, match="another policy or secret"):
            run_partition(manifest, keys[0], str(out), str(audit), policy="default", pool=pool)
    assert [r.counts for r in results] == [{"ok": 4}, {"ok": 4}]
    assert pool.start_seconds is not None
    assert pool.start_seconds > 0
    assert [r.pool_start_seconds for r in results] == [0.0, 0.0]  # started by the caller
    assert pool.restarts == 0
    _assert_same(_snapshot(str(first_run[0]), str(first_run[1])), _snapshot(str(out), str(audit)))


@pytest.mark.slow
def test_cli_runs_every_partition_on_one_pool(
    manifest: pd.DataFrame,
    first_run: tuple[Path, Path, list],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    path = tmp_path / "manifest.parquet"
    write_manifest(manifest, str(path))
    policy = tmp_path / "policy.yaml"
    policy.write_text('pixels:\n  mode: "off"\n')
    out, audit = tmp_path / "out", tmp_path / "audit"
    code = main(
        ["-q", "run", str(path), "--output", str(out), "--audit", str(audit), "--all",
         "--workers", "2", "--policy", str(policy)]
    )  # fmt: skip
    assert code == 0
    _assert_same(_snapshot(str(first_run[0]), str(first_run[1])), _snapshot(str(out), str(audit)))


@pytest.mark.slow
def test_a_file_that_kills_its_worker_fails_alone_and_the_rest_goes_on(
    corpus: tuple[Path, list[GeneratedFile]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process really dies (SIGKILL, as the out-of-memory killer does) on one file."""
    files = corpus[1]
    culprit = tmp_path / "kills-its-worker.dcm"
    culprit.write_bytes(files[0].path.read_bytes())
    sources = [str(f.path) for f in files[1:]] + [str(culprit)]
    manifest = pd.DataFrame({"path": sources, "partition": "crash-1"})
    monkeypatch.setenv(CRASH_HOOK_ENV, culprit.name)
    out, audit = tmp_path / "out", tmp_path / "audit"
    result = run_partition(
        manifest, "crash-1", str(out), str(audit), policy=HEADER_ONLY, workers=2,
        max_failed_fraction=0.5,
    )  # fmt: skip
    assert result.counts == {"ok": len(files) - 1, "failed": 1}
    assert result.error_codes == {"worker_crashed": 1}
    assert result.pool_restarts == 2  # after the pool broke, and after the culprit died alone
    assert not result.budget_exceeded
    rows = read_audit(str(audit), "files")
    assert sorted(rows["source"]) == sorted(sources)  # every row once: the audit is complete
    failed = rows.set_index("source").loc[str(culprit)]
    assert (failed["status"], failed["error_code"]) == ("failed", "worker_crashed")
    assert pd.isna(failed["output"])
    assert failed["source_sha256"] == hashlib.sha256(culprit.read_bytes()).hexdigest()
    assert not any(value in failed["error_message"] for value in _phi(files))
    written = sorted(str(p) for p in out.rglob("*") if p.is_file())
    assert written == sorted(rows["output"].dropna())  # no temporaries, nothing for the culprit
    check = check_partition(manifest, "crash-1", str(out), str(audit))
    assert check.passed, check.to_summary()
    # without the crash the same file goes through: only the dead worker made it fail
    monkeypatch.delenv(CRASH_HOOK_ENV)
    again = run_partition(manifest, "crash-1", str(out), str(audit), policy=HEADER_ONLY, workers=2)
    assert again.counts == {"ok": len(files)}
    assert again.pool_restarts == 0


_KILLED_RUN = """
import sys
from dicomscrub.core.runner import run_partition
if __name__ == "__main__":
    run_partition(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
                  policy={"pixels": {"mode": "off"}}, workers=int(sys.argv[5]))
"""


@pytest.mark.slow
def test_sigkill_midway_then_rerun_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """A run killed with SIGKILL (whole process group) midway, then rerun, ends identical."""
    workers = 1
    make_studies(tmp_path / "in", patients=1, series_per_study=2, instances_per_series=20)
    manifest = str(tmp_path / "manifest.parquet")
    write_manifest(build_manifest(str(tmp_path / "in")), manifest)
    (key,) = partition_keys(manifest)
    reference = _run_all(manifest, tmp_path / "ref-out", tmp_path / "ref-audit")
    assert reference[0].ok == 40
    expected = _snapshot(str(tmp_path / "ref-out"), str(tmp_path / "ref-audit"))

    out, audit = tmp_path / "out", tmp_path / "audit"
    script = tmp_path / "killed_run.py"
    script.write_text(_KILLED_RUN)
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    proc = subprocess.Popen(
        [sys.executable, str(script), manifest, key, str(out), str(audit), str(workers)],
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(1 for _ in (out / key).rglob("*.dcm")) >= 3:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    written = sum(1 for _ in (out / key).rglob("*.dcm"))
    assert 3 <= written < 40, "the kill did not land midway"
    assert read_audit(str(audit), "files").empty  # the audit is committed last

    _run_all(manifest, out, audit)
    _assert_same(expected, _snapshot(str(out), str(audit)))


@pytest.mark.slow
def test_burned_in_text_gives_pixel_entity_rows(tmp_path: Path) -> None:
    from dicomscrub.core.samples import generate_corpus

    generate_corpus(str(tmp_path / "corpus"), patients=1)
    manifest = build_manifest(str(tmp_path / "corpus" / "dicom"))
    out, audit = tmp_path / "out", tmp_path / "audit"
    results = _run_all(manifest, out, audit, policy="default")
    files = pd.read_parquet(audit / "files")
    assert len(files) == len(manifest[manifest["reject_reason"] == ""])
    entities = pd.read_parquet(audit / "entities")
    pixel = entities[entities["location"] == "pixel"]
    assert len(pixel) > 0, results[0].to_summary()
    assert set(pixel["action"]) <= {"masked", "kept"}
    assert pixel["box"].map(len).eq(4).all()
    assert (files.loc[files["pixel_entities"] > 0, "pixels_changed"]).all()
    for output in files.loc[files["status"] == "ok", "output"]:
        pydicom.dcmread(output)


@pytest.mark.slow
@pytest.mark.shared_data
def test_sample_files_end_to_end(shared_dicom: Path, tmp_path: Path) -> None:
    chosen = [
        "deid-data/GREYSCALE_IMAGE.dcm",
        "pydicom-bundled/CT_small.dcm",
        "presidio/2_ORIGINAL.dcm",
        "README.md",
    ]
    manifest = build_manifest(str(shared_dicom))
    manifest = manifest[manifest["path"].isin([str(shared_dicom / c) for c in chosen])]
    assert len(manifest) == len([c for c in chosen if (shared_dicom / c).exists()])
    out, audit = tmp_path / "out", tmp_path / "audit"
    _run_all(manifest, out, audit, policy="default", max_failed_fraction=1.0)
    files = pd.read_parquet(audit / "files")
    usable = manifest[manifest["reject_reason"] == ""]
    assert sorted(files["source"]) == sorted(usable["path"])
    entities = pd.read_parquet(audit / "entities")
    us = files.loc[files["source"].str.endswith("GREYSCALE_IMAGE.dcm")].iloc[0]
    assert us["status"] == "ok"
    assert us["pixel_entities"] > 0
    assert (entities["source"] == us["source"]).sum() == us["header_entities"] + us[
        "pixel_entities"
    ]
    for output in files["output"].dropna():
        assert pydicom.dcmread(output).PatientIdentityRemoved == "YES"


@pytest.mark.slow
def test_a_file_that_hangs_fails_with_worker_timeout_and_the_rest_goes_on(
    corpus: tuple[Path, list[GeneratedFile]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker really hangs on one file (the test hook sleeps for an hour)."""
    files = corpus[1][:4]
    culprit = tmp_path / "hangs-its-worker.dcm"
    culprit.write_bytes(files[0].path.read_bytes())
    sources = [str(f.path) for f in files[1:]] + [str(culprit)]
    manifest = pd.DataFrame({"path": sources, "partition": "hang-1"})
    monkeypatch.setenv(HANG_HOOK_ENV, culprit.name)
    out, audit = tmp_path / "out", tmp_path / "audit"
    started = time.perf_counter()
    with WorkerPool(Policy.load(HEADER_ONLY), TEST_SECRET, 2, file_timeout=4.0) as pool:
        result = run_partition(
            manifest, "hang-1", str(out), str(audit), policy=HEADER_ONLY, secret=TEST_SECRET,
            max_failed_fraction=0.5, pool=pool,
        )  # fmt: skip
        assert pool.timeouts == 1
    assert time.perf_counter() - started < 120  # not the hour the hook sleeps
    assert result.counts == {"ok": len(files) - 1, "failed": 1}
    assert result.error_codes == {"worker_timeout": 1}
    rows = read_audit(str(audit), "files").set_index("source")
    failed = rows.loc[str(culprit)]
    assert (failed["status"], failed["error_code"]) == ("failed", "worker_timeout")
    assert "4 s" in failed["error_message"]
    assert pd.isna(failed["output"])
    assert not any(value in failed["error_message"] for value in _phi(files))
    written = sorted(str(p) for p in out.rglob("*") if p.is_file())
    assert written == sorted(rows["output"].dropna())  # no temporaries, nothing for the culprit
    with pytest.raises(ConfigurationError):
        WorkerPool(Policy.load(HEADER_ONLY), TEST_SECRET, 2, file_timeout=0)
