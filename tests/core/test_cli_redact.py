"""`dicomscrub redact`: every sample file through the CLI, PHI gone, bad input handled.

Sample files: pydicom's bundled test files, pydicom-data, deid-data and (when it
exists) ../shared/data/dicom. Input trees are built from symbolic links in a
temporary folder; nothing is copied into the repository.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from dicomscrub.core.cli import main
from support import deid_data_dir

PHYSICIAN_KEYWORDS = (
    "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord", "RequestingPhysician", "ConsultingPhysicianName",
    "ScheduledPerformingPhysicianName",
)  # fmt: skip
SKIPPED_BYTES = {0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010}
# Files of pydicom's test set that are not complete DICOM files (each fails with this code).
EXPECTED_FAILURES = {
    "rtplan_truncated.dcm": "truncated",
    "MR_truncated.dcm": "truncated",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
    # raw datasets without SOP Class UID: they cannot become a valid DICOM file
    "UN_sequence.dcm": "invalid_value",
    "no_meta_group_length.dcm": "invalid_value",
    "meta_missing_tsyntax.dcm": "invalid_value",
    "nested_priv_SQ.dcm": "invalid_value",
    "priv_SQ.dcm": "invalid_value",
    "empty_charset_LEI.dcm": "invalid_value",
    # a stray byte before the first element: not a dataset
    "no_meta.dcm": "not_dicom",
}


def _dicom_like(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", "") or path.name.startswith("IM"):
        head = path.read_bytes()[:132]
        return (len(head) == 132 and head[128:] == b"DICM") or path.suffix.lower() == ".dcm"
    return False


def _installed_test_files() -> list[Path]:
    """pydicom's bundled test and colour palette files and pydicom-data's, without trying
    any download (``get_testdata_files`` also tries to fetch files that are not installed)."""
    from pydicom.data.data_manager import DATA_ROOT, external_data_sources

    found = [*(Path(DATA_ROOT) / "test_files").glob("*"), *(Path(DATA_ROOT) / "palettes").glob("*")]
    for source in external_data_sources().values():
        found += [Path(p) for p in source.get_paths("*", 0)]
    return sorted(p for p in found if p.is_file() and p.suffix != ".py")


def sample_files() -> dict[str, Path]:
    """Every bundled sample DICOM file by a unique relative name."""
    files: dict[str, Path] = {}
    for path in _installed_test_files():
        if _dicom_like(path):
            files[f"pydicom/{path.parent.name}/{path.name}"] = path
    for path in sorted(deid_data_dir().rglob("*.dcm")):
        files[f"deid-data/{path.parent.name}/{path.name}"] = path
    return files


def link_tree(files: dict[str, Path], root: Path) -> Path:
    for name, path in files.items():
        link = root / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return root


@dataclass
class Run:
    code: int
    out: str
    source: Path
    target: Path


def redact(source: Path, target: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> Run:
    code = main(["-q", "redact", str(source), str(target), *args])
    captured = capsys.readouterr()
    return Run(code, captured.out + captured.err, source, target)


def header_only_policy(tmp: Path) -> Path:
    path = tmp / "header-only.yaml"
    path.write_text("name: header-only\npixels:\n  mode: 'off'\n", encoding="utf-8")
    return path


# -- the PHI check (independent of core/verify.py) ----------------------------------------------
def identifiers(ds: Dataset) -> tuple[set[str], set[str]]:
    """Original (name parts and values, whole values): names, IDs, birth date, accession,
    institution and physician names, at any depth."""
    parts: set[str] = set()
    wholes: set[str] = set()
    for element in ds.iterall():
        keyword = element.keyword
        if keyword not in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                           "InstitutionName", *PHYSICIAN_KEYWORDS):  # fmt: skip
            continue
        value = element.value
        values = list(value) if isinstance(value, list | tuple | MultiValue) else [value]
        for item in values:
            text = str(item or "").strip()
            if element.VR == "PN":
                words = [p for p in re.split(r"[\^=\s,]+", text) if p]
                parts.update(w for w in words if len(w) >= 3)
                wholes.add(" ".join(words))
            elif len(text) >= 3:
                parts.add(text)
                wholes.add(text)
    return parts, {w for w in wholes if len(w) >= 3}


def _pattern(values: set[str]) -> re.Pattern[str] | None:
    if not values:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, v.split())) for v in sorted(values))
    return re.compile(rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


# dicomscrub's own pseudonyms (documented forms): PATIENT^XXXXXXXXXX is not a leak of "PATIENT"
OWN_FORMS = re.compile(r"(?:PATIENT|PERSON)\^[A-Z2-7]{10}|(?:PID|ACC|SID|IDN)-[A-Z2-7]{12}")


def texts(ds: Dataset) -> Iterator[tuple[str, str, str]]:
    """(keyword or tag, VR, text) of every value in the output, file meta and bytes included."""
    meta = list(ds.file_meta) if hasattr(ds, "file_meta") else []
    for element in [*meta, *ds.iterall()]:
        name = element.keyword or str(element.tag)
        value = element.value
        if isinstance(value, bytes):
            if element.tag not in SKIPPED_BYTES and element.tag.group not in range(0x6000, 0x6020):
                yield name, element.VR, value.decode("latin-1")
        elif type(value).__name__ == "MultiValue":
            for item in value:
                yield name, element.VR, str(item)
        elif value is not None and not isinstance(value, pydicom.sequence.Sequence):
            yield name, element.VR, str(value)


def leaks(source: Path, output: Path) -> list[str]:
    """Where an original identifier survives in the output.

    Coded (CS) values are compared with whole identifying values only: a CS value
    equal to a name part is a coincidence (eCT_Supplemental's patient is called
    "Perfusion^..." and its ImageType says PERFUSION), a whole name in a CS is a leak.
    """
    parts, wholes = identifiers(pydicom.dcmread(source, force=True))
    in_text, in_codes = _pattern(parts), _pattern(wholes)
    found = []
    for name, vr, text in texts(pydicom.dcmread(output)):
        pattern = in_codes if vr == "CS" else in_text
        if pattern is None or name == "DeidentificationMethod":
            continue
        found += [f"{name}: {m.group(0)!r}" for m in pattern.finditer(OWN_FORMS.sub(" ", text))]
    return found


def outputs(run: Run) -> Iterator[tuple[Path, Path]]:
    for path in sorted(run.source.rglob("*")):
        if path.is_file():
            target = run.target / path.relative_to(run.source)
            yield path, target


# -- the sweeps ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    files = sample_files()
    return link_tree(files, tmp_path_factory.mktemp("bundled-in")), files


def test_every_bundled_sample_through_the_cli(
    bundled: tuple[Path, dict[str, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, files = bundled
    run = redact(source, tmp_path / "out", "--policy", str(header_only_policy(tmp_path)),
                 capsys=capsys)  # fmt: skip
    assert run.code == 1  # the deliberately broken test files fail
    assert "Traceback" not in run.out
    failed = dict(re.findall(r"^failed: (\S+): (\w+): ", run.out, re.MULTILINE))
    assert {Path(k).name: v for k, v in failed.items()} == EXPECTED_FAILURES
    summary = re.search(r"files: (\d+)  ok: (\d+)  failed: (\d+)", run.out)
    assert summary is not None
    assert summary.groups() == (str(len(files)), str(len(files) - len(failed)), str(len(failed)))
    problems = []
    for path, target in outputs(run):
        if Path(path).name in EXPECTED_FAILURES:
            assert not target.exists()
            continue
        assert target.is_file(), path
        problems += [f"{path.name}: {leak}" for leak in leaks(path.resolve(), target)]
    assert problems == []


@pytest.mark.shared_data
def test_shared_samples_header_only(
    shared_dicom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = redact(shared_dicom, tmp_path / "out", "--policy", str(header_only_policy(tmp_path)),
                 capsys=capsys)  # fmt: skip
    _check_shared(run)


@pytest.mark.slow
@pytest.mark.shared_data
def test_shared_samples_default_policy_with_pixels(
    shared_dicom: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = redact(shared_dicom, tmp_path / "out", "--workers", "2", capsys=capsys)
    _check_shared(run)


def _check_shared(run: Run) -> None:
    assert "Traceback" not in run.out
    failed = dict(re.findall(r"^failed: (\S+): (\w+): ", run.out, re.MULTILINE))
    # the folder's README, manifest and ground truth are not DICOM; every .dcm succeeds
    assert failed == {
        "README.md": "not_dicom",
        "manifest.csv": "not_dicom",
        "presidio/ground_truth.json": "not_dicom",
    }
    assert run.code == 1
    checked = 0
    for path, target in outputs(run):
        if path.suffix != ".dcm":
            assert not target.exists()
            continue
        assert leaks(path, target) == [], path.name
        checked += 1
    assert checked == 23


# -- single files, options, bad input --------------------------------------------------------------
def test_single_file_and_directory_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    policy = str(header_only_policy(tmp_path))
    run = redact(source, tmp_path / "one.dcm", "--policy", policy, capsys=capsys)
    assert run.code == 0
    assert (tmp_path / "one.dcm").is_file()
    assert "files: 1  ok: 1  failed: 0" in run.out
    assert "entities by type:" in run.out
    (tmp_path / "dir").mkdir()
    assert redact(source, tmp_path / "dir", "--policy", policy, capsys=capsys).code == 0
    assert (tmp_path / "dir" / "CT_small.dcm").is_file()


def bad_inputs(root: Path) -> Path:
    ct = Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()
    (root / "nested").mkdir(parents=True)
    (root / "zero.dcm").write_bytes(b"")
    (root / "text.dcm").write_text("not dicom at all " * 20, encoding="utf-8")
    (root / "truncated.dcm").write_bytes(ct[:-1000])
    ds = pydicom.dcmread(io.BytesIO(ct))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5"
    ds.save_as(root / "nested" / "unknown_ts.dcm")
    (root / "nested" / "good.dcm").write_bytes(ct)
    deep = pydicom.dcmread(io.BytesIO(ct))
    item = Dataset()
    item.CodeValue = "1"
    for _ in range(40):
        wrapper = Dataset()
        wrapper.ContentSequence = [item]
        item = wrapper
    deep.ContentSequence = [item]
    deep.save_as(root / "deep.dcm")
    return root


def test_bad_input_fails_per_file_and_the_rest_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = bad_inputs(tmp_path / "in")
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    run = redact(source, tmp_path / "out", "--policy", str(header_only_policy(tmp_path)),
                 capsys=capsys)  # fmt: skip
    assert run.code == 1
    assert "Traceback" not in run.out
    failed = dict(re.findall(r"^failed: (\S+): (\w+): ", run.out, re.MULTILINE))
    assert failed == {
        "deep.dcm": "sequence_too_deep",
        "nested/unknown_ts.dcm": "unsupported_transfer_syntax",
        "text.dcm": "not_dicom",
        "truncated.dcm": "truncated",
        "zero.dcm": "empty_file",
    }
    outputs = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*"))
    assert outputs == ["nested", "nested/good.dcm"]
    assert before == {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    assert "CompressedSamples" not in run.out


def test_secret_handling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    policy = str(header_only_policy(tmp_path))
    monkeypatch.delenv("DICOMSCRUB_SECRET")
    run = redact(source, tmp_path / "a.dcm", "--policy", policy, capsys=capsys)
    assert run.code == 2
    assert "DICOMSCRUB_SECRET" in run.out
    assert not (tmp_path / "a.dcm").exists()
    monkeypatch.setenv("OTHER_SECRET", "x")
    assert redact(source, tmp_path / "b.dcm", "--policy", policy, "--secret-env", "OTHER_SECRET",
                  capsys=capsys).code == 0  # fmt: skip
    with pytest.warns(UserWarning, match="throwaway"):
        run = redact(source, tmp_path / "c.dcm", "--policy", policy, "--ephemeral-secret",
                     capsys=capsys)  # fmt: skip
    assert run.code == 0


def test_console_script_workers_and_progress(tmp_path: Path) -> None:
    source = bad_inputs(tmp_path / "in")
    policy = str(header_only_policy(tmp_path))
    env = {**os.environ, "DICOMSCRUB_SECRET": "cli-secret"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dicomscrub"), "redact", str(source),
         str(tmp_path / "out"), "--policy", policy, "--workers", "2"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert "files: 6  ok: 1  failed: 5" in done.stdout
    assert "file/s" in done.stderr or "6/6" in done.stderr  # tqdm progress bar
    assert (tmp_path / "out" / "nested" / "good.dcm").is_file()
