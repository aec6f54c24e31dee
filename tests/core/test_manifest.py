"""Manifests: scanning, partition keys without PHI, bring-your-own manifests, round trips."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from batch_data import GeneratedFile, make_studies

from dicomscrub.core.cli import main
from dicomscrub.core.errors import ConfigurationError
from dicomscrub.core.manifest import (
    MANIFEST_COLUMNS,
    build_manifest,
    partition_keys,
    read_manifest,
    write_manifest,
)
from dicomscrub.core.storage import validate_partition_key

SECRET = "manifest-test-secret"


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[GeneratedFile]]:
    """3 patients x 2 studies x 2 series x 2 instances (24 files), plus junk files."""
    root = tmp_path_factory.mktemp("manifest-in")
    files = make_studies(root, patients=3, studies_per_patient=2)
    (root / "notes.txt").write_text("not a dicom file")
    (root / "empty.dcm").write_bytes(b"")
    (root / ".hidden.dcm").write_bytes(files[0].path.read_bytes())
    return root, files


@pytest.fixture(scope="module")
def built(studies: tuple[Path, list[GeneratedFile]]) -> pd.DataFrame:
    return build_manifest(str(studies[0]), secret=SECRET, workers=2)


def _phi_of(files: list[GeneratedFile]) -> set[str]:
    values = set()
    for f in files:
        values.update(v for v in f.phi if v)
        values.add(f.series_uid)
    return values


def test_one_row_per_file_with_every_column(
    built: pd.DataFrame, studies: tuple[Path, list[GeneratedFile]]
) -> None:
    files = studies[1]
    assert list(built.columns) == list(MANIFEST_COLUMNS)
    assert len(built) == len(files) + 2  # the two junk files; the hidden file is ignored
    assert built["path"].is_unique
    usable = built[built["reject_reason"] == ""]
    assert sorted(usable["path"]) == sorted(str(f.path) for f in files)
    by_path = usable.set_index("path")
    for f in files:
        row = by_path.loc[str(f.path)]
        assert (row["study_uid"], row["series_uid"], row["sop_uid"]) == (
            f.study_uid,
            f.series_uid,
            f.sop_uid,
        )
        assert row["modality"] == "CT"
        assert row["study_date"] == f.study_date
        assert row["size"] == f.path.stat().st_size
        assert re.fullmatch(r"p-[0-9a-f]{16}", row["patient_key"])


def test_non_dicom_files_are_rejected_with_a_reason(built: pd.DataFrame) -> None:
    rejected = built[built["reject_reason"] != ""].set_index("path")
    reasons = {Path(p).name: r for p, r in rejected["reject_reason"].items()}
    assert reasons == {
        "notes.txt": "not_dicom: not a DICOM file",
        "empty.dcm": "empty_file: file is empty",
    }
    assert rejected["partition"].isna().all()


def test_study_partitions_hold_whole_studies_and_no_phi(
    built: pd.DataFrame, studies: tuple[Path, list[GeneratedFile]]
) -> None:
    usable = built[built["reject_reason"] == ""]
    assert (usable.groupby("study_uid")["partition"].nunique() == 1).all()
    keys = partition_keys(built)
    assert len(keys) == 6  # one per study
    phi = _phi_of(studies[1])
    for key in keys:
        assert re.fullmatch(r"s-[0-9a-f]{16}", key)
        validate_partition_key(key)
        assert not any(value in key for value in phi)
    patients = usable.groupby("patient_key")["study_uid"].nunique()
    assert sorted(patients) == [2, 2, 2]


def test_keys_are_keyed_and_deterministic(studies: tuple[Path, list[GeneratedFile]]) -> None:
    root = str(studies[0])
    first = build_manifest(root, secret=SECRET, workers=1)
    again = build_manifest(root, secret=SECRET, workers=3)
    other = build_manifest(root, secret="another-secret", workers=1)
    pd.testing.assert_frame_equal(first, again)
    assert set(partition_keys(first)).isdisjoint(partition_keys(other))
    assert set(first["patient_key"]).isdisjoint(set(other["patient_key"]) - {""})


@pytest.mark.parametrize(
    ("partition_by", "pattern", "count"),
    [
        ("patient", r"p-[0-9a-f]{16}", 3),
        ("study-date", r"y2023", 1),
        ("hash:4", r"h[0-3]", None),
        ("hash:12", r"h(0\d|1[01])", None),
        ("modality", r"CT", 1),
    ],
)
def test_other_partition_schemes(
    studies: tuple[Path, list[GeneratedFile]],
    partition_by: str,
    pattern: str,
    count: int | None,
) -> None:
    df = build_manifest(str(studies[0]), partition_by=partition_by, secret=SECRET)
    keys = partition_keys(df)
    assert all(re.fullmatch(pattern, key) for key in keys), keys
    if count is not None:
        assert len(keys) == count
    usable = df[df["reject_reason"] == ""]
    assert (usable.groupby("study_uid")["partition"].nunique() == 1).all()


@pytest.mark.parametrize("partition_by", ["path", "study_uid", "study_date", "nope", "hash:0"])
def test_unusable_partition_schemes_are_refused(
    studies: tuple[Path, list[GeneratedFile]], partition_by: str
) -> None:
    with pytest.raises(ConfigurationError):
        build_manifest(str(studies[0]), partition_by=partition_by, secret=SECRET)


def test_unkeyed_fallback_without_secret(
    studies: tuple[Path, list[GeneratedFile]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DICOMSCRUB_SECRET", raising=False)
    plain = build_manifest(str(studies[0]))
    monkeypatch.setenv("DICOMSCRUB_SECRET", SECRET)
    from_env = build_manifest(str(studies[0]))
    keyed = build_manifest(str(studies[0]), secret=SECRET)
    assert partition_keys(from_env) == partition_keys(keyed)
    assert set(partition_keys(plain)).isdisjoint(partition_keys(keyed))
    assert len(partition_keys(plain)) == 6


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_read_round_trip(built: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = str(tmp_path / f"manifest{suffix}")
    write_manifest(built, path)
    back = read_manifest(path, secret=SECRET)
    pd.testing.assert_frame_equal(back, built, check_dtype=False)
    assert partition_keys(path) == partition_keys(built)
    assert [p.name for p in tmp_path.iterdir()] == [f"manifest{suffix}"]


def test_bring_your_own_manifest_with_paths_only(
    built: pd.DataFrame, studies: tuple[Path, list[GeneratedFile]], tmp_path: Path
) -> None:
    root, files = studies
    csv = root / "byo.csv"  # relative paths resolve against the manifest's folder
    rel = [str(f.path.relative_to(root)) for f in files]
    pd.DataFrame({"path": rel}).to_csv(csv, index=False)
    try:
        df = read_manifest(str(csv), secret=SECRET)
    finally:
        csv.unlink()
    expected = built[built["reject_reason"] == ""].sort_values("path").reset_index(drop=True)
    pd.testing.assert_frame_equal(
        df.sort_values("path").reset_index(drop=True), expected, check_dtype=False
    )


def test_bring_your_own_partitions_are_kept_and_validated(
    studies: tuple[Path, list[GeneratedFile]],
) -> None:
    files = studies[1]
    by_patient = pd.DataFrame(
        {
            "path": [str(f.path) for f in files],
            "partition": [f"site-{f.patient_id[-1]}" for f in files],
        }
    )
    df = read_manifest(by_patient, secret=SECRET)
    assert partition_keys(df) == ["site-0", "site-1", "site-2"]
    assert df["study_uid"].ne("").all()

    spanning = by_patient.assign(partition=[f"k{i % 2}" for i in range(len(files))])
    with pytest.raises(ConfigurationError, match="span more than one partition"):
        read_manifest(spanning, secret=SECRET)
    dated = by_patient.assign(partition="2023-05-01")
    with pytest.raises(ConfigurationError, match="calendar date"):
        read_manifest(dated, secret=SECRET)
    unsafe = by_patient.assign(partition="../up")
    with pytest.raises(ConfigurationError):
        read_manifest(unsafe, secret=SECRET)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"file": ["a"]}), "'path' column"),
        (pd.DataFrame({"path": ["a", "a"], "partition": ["k", "k"]}), "more than once"),
    ],
)
def test_bad_manifests_are_refused(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        read_manifest(frame, secret=SECRET)


def test_unknown_manifest_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"\.parquet"):
        read_manifest(str(tmp_path / "manifest.json"))


def test_cli_manifest_build(
    studies: tuple[Path, list[GeneratedFile]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "m.parquet"
    code = main(["manifest", "build", str(studies[0]), "-o", str(out), "--partition-by", "patient"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "26 files, 24 usable in 3 partitions, 2 rejected" in printed
    assert "not_dicom" in printed
    assert len(partition_keys(str(out))) == 3


def test_manifest_over_loopback_s3(s3_server: Any, s3_bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server.storage_options)
    from batch_data import make_file

    local = make_file(
        Path("/tmp") / "dicomscrub-s3-manifest.dcm", patient=9, study=0, series=0, instance=0
    )
    fs.put_file(str(local.path), f"{s3_bucket}/in/a/1.dcm")
    fs.pipe_file(f"{s3_bucket}/in/readme.txt", b"hello")
    local.path.unlink()
    options = s3_server.storage_options
    df = build_manifest(f"{s3_bucket}/in", secret=SECRET, storage_options=options)
    assert df["path"].tolist() == [f"{s3_bucket}/in/a/1.dcm", f"{s3_bucket}/in/readme.txt"]
    assert df["sop_uid"].iloc[0] == local.sop_uid
    assert df["reject_reason"].iloc[1].startswith("not_dicom")
    write_manifest(df, f"{s3_bucket}/manifest.parquet", storage_options=options)
    back = read_manifest(f"{s3_bucket}/manifest.parquet", storage_options=options)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_reading_one_partition(built: pd.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = str(tmp_path / f"manifest{suffix}")
    write_manifest(built, path)
    key = partition_keys(built)[2]
    one = read_manifest(path, partition=key)
    expected = built[built["partition"] == key].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, expected, check_dtype=False)
    assert read_manifest(path, partition="s-absent").empty
