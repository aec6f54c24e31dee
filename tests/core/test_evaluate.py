"""The scorer tells an identity copy (everything leaked) from an answer-key oracle (clean).

The oracle below uses only the answer key: it removes or replaces every
planted value, cuts the PHI fragments out of free text, remaps UIDs
consistently, shifts dates per patient and paints over the PHI text boxes.
Then single defects are put back into the oracle's output, one at a time, and
each must move exactly the metric that measures it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from dicomscrub.core.answer_key import load_answer_key, resolve, split_path
from dicomscrub.core.cli import main
from dicomscrub.core.evaluate import METRICS, Report, evaluate, evaluate_cli
from dicomscrub.core.samples import generate_corpus

# --- the answer-key oracle ----------------------------------------------------------------------


def _pseudo_uid(uid: str) -> str:
    return "2.25." + str(int(hashlib.sha256(uid.encode()).hexdigest(), 16) % 10**38)


def _shift(value: str, days: int) -> str:
    import datetime as dt

    d = dt.datetime.strptime(value[:8], "%Y%m%d").date() + dt.timedelta(days=days)
    return f"{d:%Y%m%d}" + value[8:]


def oracle_deidentify(corpus: Path, out: Path) -> None:
    """De-identify the corpus perfectly, knowing the answer key."""
    key = load_answer_key(corpus)
    patients = sorted({f["patient"] for f in key["files"]})
    shift = {p: -(31 + 17 * i) for i, p in enumerate(patients)}
    for fk in key["files"]:
        ds = pydicom.dcmread(corpus / "dicom" / fk["path"])
        date_paths = {d["path"] for d in fk["dates"]}
        free = {t["path"]: t for t in fk["free_text"]}
        for planted in fk["header_phi"]:
            path = planted["path"]
            if planted["where"] == "private":
                top = split_path(path)[0][0]
                tag = int(top[1:5], 16) << 16 | int(top[6:10], 16)
                if tag in ds:
                    del ds[tag]
                continue
            if path in date_paths or path in free:
                continue  # shifted below / cleaned below
            elem = resolve(ds, path)
            assert elem is not None, path
            elem.value = "" if planted["type"] == "DATE" else "REMOVED"
        for text in free.values():
            elem = resolve(ds, text["path"])
            assert elem is not None
            value = str(elem.value)
            for fragment in text["phi"]:
                value = value.replace(fragment, "[PHI]")
            elem.value = value
        for entry in fk["dates"]:
            elem = resolve(ds, entry["path"])
            assert elem is not None
            elem.value = _shift(str(elem.value), shift[fk["patient"]])
        for entry in fk["uids"]:
            elem = resolve(ds, entry["path"])
            assert elem is not None
            elem.value = _pseudo_uid(entry["value"])
        if fk["rows"]:
            arr = ds.pixel_array.copy()
            arr = arr if fk["frames"] > 1 else arr[np.newaxis]
            mono1 = ds.PhotometricInterpretation == "MONOCHROME1"
            for item in fk["burned_in"]:
                if not item["is_phi"]:
                    continue
                x, y, w, h = item["box"]
                for frame in item["frames"]:
                    fill = arr[frame].max() if mono1 else arr[frame].min()
                    arr[frame, max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2] = fill
            arr = arr if fk["frames"] > 1 else arr[0]
            if ds.PhotometricInterpretation.startswith("YBR"):
                ds.PhotometricInterpretation = "RGB"
            ds.PixelData = arr.tobytes()
            ds["PixelData"].VR = "OW" if arr.dtype.itemsize == 2 else "OB"
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        target = out / fk["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    generate_corpus(out, seed=7)
    return out


@pytest.fixture(scope="module")
def identity(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("identity") / "out"
    shutil.copytree(corpus / "dicom", out)
    return out


@pytest.fixture(scope="module")
def oracle(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("oracle") / "out"
    oracle_deidentify(corpus, out)
    return out


@pytest.fixture(scope="module")
def oracle_report(corpus: Path, oracle: Path) -> Report:
    return evaluate(corpus, oracle)


def _rates(report: Report) -> dict[str, float | None]:
    return {name: m.rate for name, m in report.metrics.items()}


# --- identity versus oracle -----------------------------------------------------------------------


def test_identity_copy_leaks_everything(corpus: Path, identity: Path) -> None:
    report = evaluate(corpus, identity)
    rates = _rates(report)
    assert rates["header_phi_recall"] == 0.0
    assert rates["burned_in_phi_recall"] == 0.0
    assert rates["uids_changed"] == 0.0
    # what must survive did survive
    for name in ("files_output", "valid_dicom", "free_text_words_kept", "preserved_attributes",
                 "uid_consistency", "uid_distinct", "references_intact", "dates_present",
                 "date_intervals", "burned_in_labels_kept", "pixels_outside_text"):  # fmt: skip
        assert rates[name] == 1.0, name
    assert not report.clean
    types = {t for t, d in report.by_type.items() if "header_phi_recall" in d}
    assert {"PERSON", "ID", "DATE", "LOCATION", "PHONE", "ORG", "EMAIL", "DEVICE"} <= types
    wheres = {leak["where"] for leak in report.leaks}
    assert wheres == {"top", "sequence", "private", "free_text", "burned_in"}


def test_oracle_is_clean(oracle_report: Report) -> None:
    rates = _rates(oracle_report)
    assert rates == dict.fromkeys(METRICS, 1.0), oracle_report.to_text()
    assert oracle_report.clean
    assert not oracle_report.leaks
    assert oracle_report.outside_pixels.rate == 1.0
    assert set(oracle_report.by_kind) == {"ct", "mr", "us", "us_cine", "dx", "cr", "sc", "sr"}
    totals = {name: m.total for name, m in oracle_report.metrics.items()}
    assert totals["header_phi_recall"] > 300
    assert totals["burned_in_phi_recall"] > 50
    assert totals["burned_in_labels_kept"] > 50
    assert totals["references_intact"] > 20


# --- single defects move their metric -------------------------------------------------------------


def _edit(out: Path, rel: str, change: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(out / rel)
    change(ds)
    ds.save_as(out / rel, enforce_file_format=True)


def _file(key: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(f for f in key["files"] if f["kind"] == kind)


def _name_in_deep_private(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "mr")
    family = f["header_phi"][0]["needles"][0]

    def change(ds: pydicom.Dataset) -> None:
        inner = pydicom.Dataset()
        inner.private_block(0x0011, "LEAKY", create=True).add_new(0x01, "LO", f"x {family}")
        ds.private_block(0x0011, "LEAKY", create=True).add_new(
            0x02, "SQ", pydicom.Sequence([inner])
        )

    _edit(out, f["path"], change)


def _birth_date_other_format(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "ct")
    birth = next(p for p in f["header_phi"] if p["path"] == "PatientBirthDate")["value"]
    german = f"{birth[6:8]}.{birth[4:6]}.{birth[:4]}"

    def change(ds: pydicom.Dataset) -> None:
        ds.ImageComments = f"{ds.ImageComments} born {german}"

    _edit(out, f["path"], change)


def _uid_remapped_differently(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "sr")

    def change(ds: pydicom.Dataset) -> None:
        ds.StudyInstanceUID = "2.25.1234567"

    _edit(out, f["path"], change)


def _uids_merged(key: dict[str, Any], out: Path) -> None:
    """Both MR slices get the CT series' frame of reference: consistent, but not distinct."""
    ct_frame = pydicom.dcmread(out / _file(key, "ct")["path"]).FrameOfReferenceUID
    for f in key["files"]:
        if f["kind"] == "mr":
            _edit(out, f["path"], lambda ds: setattr(ds, "FrameOfReferenceUID", ct_frame))


def _reference_broken(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "sc")

    def change(ds: pydicom.Dataset) -> None:
        ds.SourceImageSequence[0].ReferencedSOPInstanceUID = "2.25.999"

    _edit(out, f["path"], change)


def _date_shifted_differently(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "dx")

    def change(ds: pydicom.Dataset) -> None:
        ds.AcquisitionDate = _shift(ds.AcquisitionDate, 3)

    _edit(out, f["path"], change)


def _birth_date_as_a_shifted_date(key: dict[str, Any], out: Path) -> None:
    """The birth date written where a shifted date belongs: a leak, whatever the shift."""
    f = _file(key, "dx")
    birth = next(p for p in f["header_phi"] if p["path"] == "PatientBirthDate")["value"]
    _edit(out, f["path"], lambda ds: setattr(ds, "AcquisitionDate", birth))


def _free_text_dropped(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "ct")
    _edit(out, f["path"], lambda ds: delattr(ds, "StudyDescription"))


def _pixel_outside_changed(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "mr")

    def change(ds: pydicom.Dataset) -> None:
        arr = ds.pixel_array.copy()
        arr[160, 160] += 1
        ds.PixelData = arr.tobytes()

    _edit(out, f["path"], change)


def _label_painted_over(key: dict[str, Any], out: Path) -> None:
    f = _file(key, "us")
    label = next(i for i in f["burned_in"] if i["text"] == "Sag Liver L-M")

    def change(ds: pydicom.Dataset) -> None:
        arr = ds.pixel_array.copy()
        x, y, w, h = label["box"]
        arr[y : y + h, x : x + w] = 0
        ds.PixelData = arr.tobytes()

    _edit(out, f["path"], change)


def _phi_box_unpainted(key: dict[str, Any], out: Path, corpus: Path) -> None:
    f = _file(key, "cr")
    item = next(i for i in f["burned_in"] if i["is_phi"] and i["type"] == "ORG")
    original = pydicom.dcmread(corpus / "dicom" / f["path"]).pixel_array

    def change(ds: pydicom.Dataset) -> None:
        arr = ds.pixel_array.copy()
        x, y, w, h = item["box"]
        arr[y : y + h, x : x + w] = original[y : y + h, x : x + w]
        ds.PixelData = arr.tobytes()

    _edit(out, f["path"], change)


def _file_missing(key: dict[str, Any], out: Path) -> None:
    (out / _file(key, "us_cine")["path"]).unlink()


DEFECTS: dict[str, tuple[Callable[..., None], set[str]]] = {
    "name in a private sequence": (_name_in_deep_private, {"header_phi_recall"}),
    "birth date as DD.MM.YYYY": (_birth_date_other_format, {"header_phi_recall"}),
    "UID remapped differently": (_uid_remapped_differently, {"uid_consistency"}),
    "two UIDs merged": (_uids_merged, {"uid_distinct"}),
    "reference broken": (_reference_broken, {"references_intact", "uid_consistency"}),
    "date shifted differently": (_date_shifted_differently, {"date_intervals"}),
    "birth date in a date element": (
        _birth_date_as_a_shifted_date,
        {"header_phi_recall", "date_intervals"},
    ),
    "free text dropped": (_free_text_dropped, {"free_text_words_kept"}),
    "pixel outside text changed": (_pixel_outside_changed, {"pixels_outside_text"}),
    "label painted over": (_label_painted_over, {"burned_in_labels_kept"}),
    "PHI box left": (_phi_box_unpainted, {"burned_in_phi_recall"}),
    "file missing": (
        _file_missing,
        {
            "files_output",
            "valid_dicom",
            "free_text_words_kept",
            "preserved_attributes",
            "dates_present",
            "burned_in_labels_kept",
            "pixels_outside_text",
            "references_intact",
        },  # the worksheet screenshot references the cine
    ),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_single_defect_moves_its_metric(
    defect: str, corpus: Path, oracle: Path, oracle_report: Report, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(oracle, out)
    change, expected = DEFECTS[defect]
    key = load_answer_key(corpus)
    if change is _phi_box_unpainted:
        change(key, out, corpus)
    else:
        change(key, out)
    report = evaluate(corpus, out)
    moved = {
        name for name in METRICS if report.metrics[name].rate != oracle_report.metrics[name].rate
    }
    assert moved == expected, report.to_text()
    if "header_phi_recall" in expected or "burned_in_phi_recall" in expected:
        assert not report.clean
        assert report.leaks
    if change is _label_painted_over:  # named, so that a sweep can say which label was lost
        assert any("label 'Sag Liver L-M'" in p["problem"] for p in report.problems)


def test_a_shifted_date_equal_to_another_planted_date_is_no_leak(
    corpus: Path, oracle: Path, tmp_path: Path
) -> None:
    """Corpus seed 1249: a patient's dates moved back 44 days put the study date onto the
    prior exam's date, planted in ImageComments; the scorer found that date's needle in
    StudyDate and reported five leaks that were none. A date element holding its own date
    moved by the file's shift is no place where another date leaks."""
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy)
    key = load_answer_key(copy)
    f = _file(key, "ct")
    study = str(pydicom.dcmread(oracle / f["path"]).StudyDate)  # the shifted study date
    f["header_phi"].append(
        {"path": "ImageComments", "tag": "(0020,4000)", "value": study, "type": "DATE",
         "where": "free_text", "needles": [study]}
    )  # fmt: skip
    (copy / "answer_key.json").write_text(json.dumps(key), encoding="utf-8")
    report = evaluate(copy, oracle)
    assert report.metrics["header_phi_recall"].rate == 1.0, report.leaks
    # the same value written anywhere else is still a leak
    out = tmp_path / "out"
    shutil.copytree(oracle, out)
    _edit(out, f["path"], lambda ds: setattr(ds, "ImageComments", f"prior {study}"))
    leaks = evaluate(copy, out).leaks
    assert [(leak["path"], leak["found_in"]) for leak in leaks] == [
        ("ImageComments", ["ImageComments"])
    ]


def test_missing_output_counts_as_not_leaked(corpus: Path, identity: Path, tmp_path: Path) -> None:
    """A tool that fails closed releases nothing: its missing files leak nothing."""
    out = tmp_path / "out"
    shutil.copytree(identity, out)
    key = load_answer_key(corpus)
    for f in key["files"][1:]:
        (out / f["path"]).unlink()
    report = evaluate(corpus, out)
    recall = report.metrics["header_phi_recall"]
    assert recall.total > 0
    assert recall.passed == recall.total - len(key["files"][0]["header_phi"])
    assert report.metrics["files_output"].passed == 1
    assert len(report.missing) == len(key["files"]) - 1


# --- outputs laid out by pseudo-UID, matched through the audit ----------------------------------


def test_audit_files_table_matches_outputs_by_source(
    corpus: Path, oracle: Path, oracle_report: Report, tmp_path: Path
) -> None:
    key = load_answer_key(corpus)
    out = tmp_path / "by-uid"
    rows = []
    for f in key["files"]:
        ds = pydicom.dcmread(oracle / f["path"], stop_before_pixels=True)
        target = out / "part-1" / f"{ds.StudyInstanceUID}" / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(oracle / f["path"], target)
        rows.append(
            {
                "source_path": str(corpus / "dicom" / f["path"]),
                "output_path": str(target),
                "status": "ok",
            }
        )
    rows.append({"source_path": "/elsewhere/x.dcm", "output_path": None, "status": "failed"})
    (tmp_path / "audit" / "files" / "partition=part-1").mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "audit" / "files" / "partition=part-1" / "0.parquet")
    report = evaluate(corpus, out, audit=str(tmp_path / "audit"))
    assert _rates(report) == _rates(oracle_report)
    assert evaluate(corpus, out).metrics["files_output"].passed == 0  # no mirrored paths


# --- command line ---------------------------------------------------------------------------


def test_cli_exit_status_and_json(
    corpus: Path, identity: Path, oracle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(corpus), str(oracle)]) == 0
    text = capsys.readouterr().out
    assert "header_phi_recall" in text
    assert "by kind:" in text
    assert "100.0%" in text
    assert evaluate_cli(corpus, identity, as_json=True) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["metrics"]["header_phi_recall"]["rate"] == 0.0
    assert data["by_type"]["PERSON"]["header_phi_recall"]["total"] > 0
    assert main(["eval", str(identity), str(identity)]) == 2  # not a corpus: clear message
    assert "answer_key.json" in capsys.readouterr().err


@pytest.mark.slow
def test_scores_a_real_batch_run_through_its_audit(corpus: Path, tmp_path: Path) -> None:
    """run_partition lays outputs out by pseudo-UID; eval finds them through the audit."""
    from dicomscrub.core.runner import run_partition

    key = load_answer_key(corpus)
    manifest = pd.DataFrame(
        {
            "path": [str(corpus / "dicom" / f["path"]) for f in key["files"]],
            "partition": "synthetic",
        }
    )
    header_only = {"base": "default", "pixels": {"mode": "off"}}
    out, audit = tmp_path / "out", tmp_path / "audit"
    result = run_partition(manifest, "synthetic", str(out), str(audit), header_only, "s3cret")
    assert result.counts.get("ok") == len(key["files"])
    report = evaluate(corpus, out, audit=str(audit))
    assert report.metrics["files_output"].rate == 1.0
    for name in ("header_phi_recall", "uids_changed", "uid_consistency", "references_intact"):
        assert report.metrics[name].rate == 1.0, report.to_text()
    assert report.metrics["burned_in_phi_recall"].rate == 0.0  # pixels were off
    assert evaluate(corpus, out).metrics["files_output"].passed == 0
