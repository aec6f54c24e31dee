"""Score de-identified output against a synthetic corpus's answer key.

``dicomscrub eval CORPUS OUTPUT [--json] [--audit AUDIT]`` matches every
corpus file to its output (the mirrored relative path that ``dicomscrub redact
CORPUS/dicom OUTPUT`` writes, or the audit's ``files`` table, source path ->
output path, when outputs are laid out by pseudo-UID) and reports:

========================  =================================================================
metric                    an item passes when ...
========================  =================================================================
files_output              the corpus file has an output file
valid_dicom               the output parses (no ``force``), keeps SOP class, has file meta
                          whose MediaStorageSOPInstanceUID equals SOPInstanceUID, and its
                          pixels decode to the input's frames x rows x columns x samples
header_phi_recall         none of a planted value's needles occurs anywhere in the output
                          (any element, any sequence depth, private tags, file meta; names
                          by parts, dates in 12 spellings; see :mod:`.answer_key`); a date
                          element holding its own date moved by the file's shift is not
                          searched for the other dates (a shift can land on one of them)
free_text_words_kept      a word that must survive is still a word of its element
preserved_attributes      a must-preserve attribute (Rows, PixelSpacing, ...) is unchanged
uids_changed              an input UID occurrence is gone from its output file (remapped or
                          removed): the original UID string appears in no element
uid_consistency           a distinct input UID maps to one and the same output UID wherever
                          it occurs, in every file
uid_distinct              distinct input UIDs map to distinct output UIDs
references_intact         a reference (ReferencedSOPInstanceUID, evidence series, ...) equals
                          the output UID of the instance/series/study it points at
dates_present             a planted date element still holds a date
date_intervals            a patient's dates are all shifted by one same number of days
burned_in_phi_recall      a PHI text item is unreadable on each of its frames: at least 95%
                          of its glyph pixels changed, or its box is one flat colour
burned_in_labels_kept     a non-PHI text item (L, R, WW 400 WL 40, ...) keeps at least 90%
                          of its glyph pixels on each of its frames
pixels_outside_text       every pixel farther than ``MARGIN`` pixels from every text box is
                          unchanged (``outside_pixels_unchanged`` gives the pixel fraction)
========================  =================================================================

Missing outputs (a tool failed closed, or skipped a file): nothing was
released, so the file's planted PHI counts as *not leaked* for the two recall
metrics; every metric about what must survive (valid_dicom, free text, preserved
attributes, dates_present, labels kept, pixels outside text) counts the file's
items as *failed*; UID metrics only look at files that exist, except that a
reference to an instance without output is broken. ``files_output`` states the
coverage up front. A file whose pixels cannot be decoded or changed shape
counts as leaked for burned-in PHI (it cannot be checked) and failed for the
pixel metrics that must survive.

Breakdowns: every metric per file kind (``ct``, ``mr``, ``us``, ``us_cine``,
``dx``, ``cr``, ``sc``, ``sr``), the recall metrics per entity type.

Examples
--------
>>> import tempfile, shutil
>>> from dicomscrub.core.samples import generate_corpus
>>> corpus = tempfile.mkdtemp()
>>> _ = generate_corpus(corpus, patients=1)
>>> copy = tempfile.mkdtemp() + "/out"
>>> _ = shutil.copytree(corpus + "/dicom", copy)   # an "identity" tool
>>> report = evaluate(corpus, copy)
>>> report.metrics["header_phi_recall"].rate, report.metrics["pixels_outside_text"].rate
(0.0, 1.0)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from .answer_key import (
    DICOM_DIR,
    load_answer_key,
    load_masks,
    needle_pattern,
    resolve,
)

#: Pixels around a text box that a tool may change (mask padding) without penalty.
MARGIN = 8
#: Share of glyph pixels that must change for a PHI item to count as redacted.
REDACTED_FRACTION = 0.95
#: Share of glyph pixels that must stay for a non-PHI label to count as kept.
KEPT_FRACTION = 0.90

METRICS = (
    "files_output",
    "valid_dicom",
    "header_phi_recall",
    "free_text_words_kept",
    "preserved_attributes",
    "uids_changed",
    "uid_consistency",
    "uid_distinct",
    "references_intact",
    "dates_present",
    "date_intervals",
    "burned_in_phi_recall",
    "burned_in_labels_kept",
    "pixels_outside_text",
)
_BINARY_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
_BINARY_LIMIT = 65536  # larger binary values (overlays, pixels) are not searched for text


@dataclass
class Metric:
    """A count of passed items out of a total.

    Examples
    --------
    >>> m = Metric(); m.add(True); m.add(False); m.rate
    0.5
    >>> Metric().rate is None
    True
    """

    passed: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        """Count one item."""
        self.total += 1
        self.passed += int(ok)

    @property
    def rate(self) -> float | None:
        """``passed / total``, or ``None`` when nothing was measured."""
        return self.passed / self.total if self.total else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"passed": self.passed, "total": self.total, "rate": self.rate}


@dataclass
class Report:
    """What :func:`evaluate` found. ``metrics`` are defined in the module docstring."""

    corpus: str
    output: str
    files_total: int = 0
    missing: list[str] = field(default_factory=list)
    metrics: dict[str, Metric] = field(default_factory=lambda: {m: Metric() for m in METRICS})
    by_kind: dict[str, dict[str, Metric]] = field(default_factory=dict)
    by_type: dict[str, dict[str, Metric]] = field(default_factory=dict)
    leaks: list[dict[str, Any]] = field(default_factory=list)
    outside_pixels: Metric = field(default_factory=Metric)
    glyph_change: list[float] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def add(
        self, metric: str, ok: bool, *, kind: str | None, entity_type: str | None = None
    ) -> None:
        """Count one item of ``metric`` globally, for its file kind and its entity type."""
        self.metrics[metric].add(ok)
        if kind is not None:
            self.by_kind.setdefault(kind, {}).setdefault(metric, Metric()).add(ok)
        if entity_type is not None:
            self.by_type.setdefault(entity_type, {}).setdefault(metric, Metric()).add(ok)

    @property
    def clean(self) -> bool:
        """True when every file has a valid output and no planted PHI leaked."""
        return all(
            self.metrics[m].rate in (None, 1.0)
            for m in ("files_output", "valid_dicom", "header_phi_recall", "burned_in_phi_recall")
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the synthetic values in ``leaks`` are not real PHI)."""
        return {
            "corpus": self.corpus,
            "output": self.output,
            "files_total": self.files_total,
            "missing": self.missing,
            "clean": self.clean,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "outside_pixels_unchanged": self.outside_pixels.to_dict(),
            "mean_phi_glyph_change": (
                float(np.mean(self.glyph_change)) if self.glyph_change else None
            ),
            "margin": MARGIN,
            "by_kind": {
                k: {m: v.to_dict() for m, v in d.items()} for k, d in sorted(self.by_kind.items())
            },
            "by_type": {
                k: {m: v.to_dict() for m, v in d.items()} for k, d in sorted(self.by_type.items())
            },
            "leaks": self.leaks,
            "problems": self.problems,
        }

    def to_text(self) -> str:
        """A readable table for the terminal."""
        lines = [
            f"corpus {self.corpus}  output {self.output}",
            f"{self.files_total - len(self.missing)}/{self.files_total} files have an output",
            "",
            f"{'metric':<24}{'rate':>9}  {'passed/total':>14}",
        ]
        for name, m in self.metrics.items():
            lines.append(f"{name:<24}{_pct(m.rate):>9}  {m.passed:>6}/{m.total:<7}")
        lines.append(
            f"{'(outside pixels)':<24}{_pct(self.outside_pixels.rate):>9}  "
            f"{self.outside_pixels.passed:>6}/{self.outside_pixels.total:<7}"
        )
        short = {
            "header_phi_recall": "hdr_phi",
            "free_text_words_kept": "text_kept",
            "preserved_attributes": "preserved",
            "burned_in_phi_recall": "px_phi",
            "burned_in_labels_kept": "px_labels",
            "pixels_outside_text": "px_outside",
            "valid_dicom": "valid",
        }
        lines += ["", "by kind:", f"{'kind':<9}" + "".join(f"{s:>11}" for s in short.values())]
        for kind, d in sorted(self.by_kind.items()):
            cells = "".join(f"{_pct(d[m].rate if m in d else None):>11}" for m in short)
            lines.append(f"{kind:<9}{cells}")
        lines += ["", "by entity type:", f"{'type':<10}{'hdr_phi':>11}{'px_phi':>11}"]
        for etype, d in sorted(self.by_type.items()):
            if etype == "LABEL":
                continue
            h = d.get("header_phi_recall")
            p = d.get("burned_in_phi_recall")
            lines.append(
                f"{etype:<10}{_pct(h.rate if h else None):>11}{_pct(p.rate if p else None):>11}"
            )
        if self.leaks:
            lines += ["", f"leaks ({len(self.leaks)}, first 15):"]
            for leak in self.leaks[:15]:
                where = leak.get("found_in") or leak.get("box")
                lines.append(f"  {leak['file']}  {leak['path']}  {leak['type']}  -> {where}")
        if self.problems:
            lines += ["", f"problems ({len(self.problems)}, first 10):"]
            lines += [f"  {p['file']}: {p['problem']}" for p in self.problems[:10]]
        return "\n".join(lines)


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


# --- output matching ---------------------------------------------------------------------------


def match_outputs(
    corpus: Path, rel_paths: list[str], output: Path, audit: str | None
) -> dict[str, Path | None]:
    """Map each corpus file (relative to ``corpus/dicom``) to its output file or ``None``.

    With ``audit``, the Parquet ``files`` table (``source``, ``output``, ``status``;
    ``source_path``/``output_path`` are accepted too) says where each source went
    (rows with status ``ok`` or ``skipped``); otherwise the output mirrors the
    relative paths. Local paths and ``file://`` URLs only.
    """
    found: dict[str, Path | None] = {}
    by_source: dict[str, Path] = {}
    if audit is not None:
        import pandas as pd

        table = pd.read_parquet(f"{audit.rstrip('/')}/files")
        source_col = "source" if "source" in table.columns else "source_path"
        output_col = "output" if "output" in table.columns else "output_path"
        for source, out, status in zip(
            table[source_col], table[output_col], table["status"], strict=True
        ):
            if status not in ("ok", "skipped") or not isinstance(out, str) or not out:
                continue
            out = out.removeprefix("file://")
            out_path = Path(out) if Path(out).is_absolute() else output / out
            source = str(source).removeprefix("file://")
            if Path(source).is_absolute():
                source = str(Path(source).resolve())
            by_source[source] = out_path
    dicom_root = (corpus / DICOM_DIR).resolve()
    for rel in rel_paths:
        candidate: Path | None = None
        absolute = str(dicom_root / rel)
        if absolute in by_source:
            candidate = by_source[absolute]
        else:
            for source, mapped_out in by_source.items():
                if source.endswith("/" + rel) or source == rel:
                    candidate = mapped_out
                    break
        if candidate is None:
            candidate = output / rel
        found[rel] = candidate if candidate.is_file() else None
    return found


# --- dataset walking -----------------------------------------------------------------------------


def dataset_strings(ds: Dataset) -> list[tuple[str, str]]:
    """Every value of ``ds`` and its file meta as text, with its path.

    Strings, person names, numbers and small binary values (decoded as Latin-1)
    at any sequence depth, private tags included; pixel data, overlay data and
    binary values over 64 KiB are left out.

    Examples
    --------
    >>> ds = Dataset(); ds.PatientName = "DOE^JANE"
    >>> dataset_strings(ds)
    [('PatientName', 'DOE^JANE')]
    """
    out: list[tuple[str, str]] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _walk(meta, "meta.", out)
    _walk(ds, "", out)
    return out


def _walk(ds: Dataset, prefix: str, out: list[tuple[str, str]]) -> None:
    for elem in ds:
        name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                _walk(item, f"{prefix}{name}[{i}].", out)
            continue
        if elem.tag == 0x7FE00010 or (
            elem.tag.group & 0xFF00 == 0x6000 and elem.tag.element == 0x3000
        ):
            continue
        value = elem.value
        if value is None:
            continue
        if isinstance(value, bytes | bytearray):
            if elem.VR in _BINARY_VRS and len(value) > _BINARY_LIMIT:
                continue
            text = bytes(value).decode("latin-1")
        elif isinstance(value, pydicom.multival.MultiValue | list | tuple):
            text = "\\".join(str(v) for v in value)
        else:
            text = str(value)
        if text:
            out.append((prefix + name, text))


def _pixels(ds: Dataset) -> np.ndarray:
    """Decoded pixels as ``(frames, rows, cols, samples)``."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    if samples == 1:
        arr = arr[..., np.newaxis]
    return np.asarray(arr)


def _parse_date(value: Any) -> dt.date | None:
    text = str(value or "").strip()
    m = re.match(r"^(\d{4})(\d{2})(\d{2})", text.replace("-", "").replace(".", ""))
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def _same_value(expected: Any, elem: Any) -> bool:
    if elem is None:
        return False
    actual = elem.value
    if isinstance(expected, list):
        values = (
            list(actual) if isinstance(actual, pydicom.multival.MultiValue | list) else [actual]
        )
        return len(values) == len(expected) and all(
            _same_scalar(e, a) for e, a in zip(expected, values, strict=True)
        )
    return _same_scalar(expected, actual)


def _same_scalar(expected: Any, actual: Any) -> bool:
    if isinstance(expected, int | float):
        try:
            return abs(float(actual) - float(expected)) <= 1e-6 * max(1.0, abs(float(expected)))
        except (TypeError, ValueError):
            return False
    return str(actual).strip() == str(expected).strip()


# --- scoring -------------------------------------------------------------------------------------


def evaluate(corpus: str | Path, output: str | Path, *, audit: str | None = None) -> Report:
    """Score the de-identified ``output`` of a synthetic ``corpus`` (see the module docstring).

    Parameters
    ----------
    corpus
        A directory written by ``dicomscrub samples generate``.
    output
        Where the tool wrote its output: mirrored relative paths of
        ``corpus/dicom``, or any layout when ``audit`` is given.
    audit
        An audit root whose ``files`` table maps source paths to output paths.
    """
    corpus_path, output_path = Path(corpus), Path(output)
    key = load_answer_key(corpus_path)
    masks = load_masks(corpus_path)
    files: list[dict[str, Any]] = key["files"]
    report = Report(corpus=str(corpus_path), output=str(output_path), files_total=len(files))
    outputs = match_outputs(corpus_path, [f["path"] for f in files], output_path, audit)
    uid_seen: list[tuple[dict[str, Any], dict[str, str], str | None]] = []  # file, entry, output
    patient_shifts: dict[str, set[int]] = defaultdict(set)
    for fk in files:
        rel, kind = fk["path"], fk["kind"]
        out_file = outputs[rel]
        report.add("files_output", out_file is not None, kind=kind)
        out_ds: Dataset | None = None
        if out_file is None:
            report.missing.append(rel)
        else:
            try:
                out_ds = pydicom.dcmread(out_file)
            except Exception as exc:
                report.problems.append(
                    {"file": rel, "problem": f"unreadable: {type(exc).__name__}"}
                )
        source = pydicom.dcmread(corpus_path / DICOM_DIR / rel)
        date_shifts = _date_shifts(fk, out_ds) if out_ds is not None else {}
        _score_header(report, fk, out_ds, date_shifts)
        _score_uids_dates(fk, out_ds, date_shifts, uid_seen, patient_shifts, report)
        _score_pixels(report, fk, source, out_ds, masks)
    _score_uid_tables(report, uid_seen)
    for _patient, shifts in sorted(patient_shifts.items()):
        report.add("date_intervals", len(shifts) == 1, kind=None)
    return report


def _score_header(
    report: Report, fk: dict[str, Any], out_ds: Dataset | None, shifts: dict[str, int]
) -> None:
    kind, rel = fk["kind"], fk["path"]
    strings = dataset_strings(out_ds) if out_ds is not None else []
    shifted = _shifted_date_paths(shifts)
    for planted in fk["header_phi"]:
        pattern = needle_pattern(planted["needles"])
        found = [
            path
            for path, text in strings
            if pattern.search(text) and not (planted["type"] == "DATE" and path in shifted)
        ]
        report.add("header_phi_recall", not found, kind=kind, entity_type=planted["type"])
        if found:
            report.leaks.append(
                {
                    "file": rel,
                    "path": planted["path"],
                    "type": planted["type"],
                    "where": planted["where"],
                    "value": planted["value"],
                    "found_in": found[:5],
                }
            )
    valid = out_ds is not None and _valid_header(fk, out_ds)
    if out_ds is not None and not valid:
        report.problems.append({"file": rel, "problem": "invalid DICOM header or file meta"})
    if fk["rows"] == 0 or not valid:  # pixel validity is added by _score_pixels
        report.add("valid_dicom", valid, kind=kind)
    for text in fk["free_text"]:
        elem = resolve(out_ds, text["path"]) if out_ds is not None else None
        value = str(elem.value) if elem is not None and elem.value is not None else ""
        for word in text["keep"]:
            ok = re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", value, re.I)
            report.add("free_text_words_kept", ok is not None, kind=kind)
    for item in fk["preserve"]:
        elem = resolve(out_ds, item["path"]) if out_ds is not None else None
        report.add("preserved_attributes", _same_value(item["value"], elem), kind=kind)


def _date_shifts(fk: dict[str, Any], out_ds: Dataset) -> dict[str, int]:
    """Days between input and output of each planted date element whose output holds a date.

    >>> out = Dataset(); out.StudyDate = "20160409"
    >>> _date_shifts({"dates": [{"path": "StudyDate", "value": "20160523"}]}, out)
    {'StudyDate': -44}
    """
    shifts: dict[str, int] = {}
    for entry in fk["dates"]:
        elem = resolve(out_ds, entry["path"])
        after = _parse_date(elem.value) if elem is not None else None
        if after is not None:
            before = _parse_date(entry["value"])
            assert before is not None
            shifts[entry["path"]] = (after - before).days
    return shifts


def _shifted_date_paths(shifts: dict[str, int]) -> set[str]:
    """The planted date elements that hold their own date moved by the file's shift.

    The shift is the most common of the file's :func:`_date_shifts`, and not zero.
    Such an element can equal another planted date by chance (a study date moved
    back 44 days onto the prior exam's date, corpus seed 1249): that is no leak of
    the other date, which the scorer would otherwise report.

    >>> sorted(_shifted_date_paths({"StudyDate": -44, "SeriesDate": -44, "ContentDate": 3}))
    ['SeriesDate', 'StudyDate']
    """
    if not shifts:
        return set()
    common, _ = Counter(shifts.values()).most_common(1)[0]
    return {path for path, days in shifts.items() if days == common != 0}


def _valid_header(fk: dict[str, Any], ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        return False
    sop = ds.get("SOPInstanceUID")
    return bool(
        sop
        and str(ds.get("SOPClassUID", "")) == _preserved(fk, "SOPClassUID", str(ds.SOPClassUID))
        and str(meta.get("MediaStorageSOPInstanceUID", "")) == str(sop)
    )


def _preserved(fk: dict[str, Any], path: str, default: str) -> str:
    for item in fk["preserve"]:
        if item["path"] == path:
            return str(item["value"])
    return default


def _score_uids_dates(
    fk: dict[str, Any],
    out_ds: Dataset | None,
    shifts: dict[str, int],
    uid_seen: list[tuple[dict[str, Any], dict[str, str], str | None]],
    patient_shifts: dict[str, set[int]],
    report: Report,
) -> None:
    kind = fk["kind"]
    if out_ds is not None:
        all_text = {text for _, text in dataset_strings(out_ds)}
        joined = "\n".join(all_text)
        for entry in fk["uids"]:
            elem = resolve(out_ds, entry["path"])
            out_uid = str(elem.value) if elem is not None and elem.value else None
            uid_seen.append((fk, entry, out_uid))
            report.add("uids_changed", entry["value"] not in joined, kind=kind)
    else:
        for entry in fk["uids"]:
            uid_seen.append((fk, entry, None))
    for entry in fk["dates"]:
        days = shifts.get(entry["path"])
        report.add("dates_present", days is not None, kind=kind)
        if days is not None:
            patient_shifts[fk["patient"]].add(days)


def _score_uid_tables(
    report: Report, uid_seen: list[tuple[dict[str, Any], dict[str, str], str | None]]
) -> None:
    present = [(fk, e, out) for fk, e, out in uid_seen if fk["path"] not in report.missing]
    outs: dict[str, list[str | None]] = defaultdict(list)
    primary: dict[str, Counter[str]] = defaultdict(Counter)
    kind_of: dict[str, str] = {}
    for fk, entry, out in present:
        outs[entry["value"]].append(out)
        kind_of.setdefault(entry["value"], fk["kind"])
        if entry["role"] != "reference" and out is not None:
            primary[entry["value"]][out] += 1
    mapped: dict[str, str] = {}
    for uid, values in outs.items():
        consistent = all(v is not None for v in values) and len(set(values)) == 1
        report.add("uid_consistency", consistent, kind=kind_of[uid])
        if consistent and values[0] is not None:
            mapped[uid] = values[0]
    owners: Counter[str] = Counter(mapped.values())
    for uid, out in mapped.items():
        report.add("uid_distinct", owners[out] == 1, kind=kind_of[uid])
    for fk, entry, out in present:
        if entry["role"] != "reference":
            continue
        target = primary.get(entry["value"])
        ok = out is not None and target is not None and out == target.most_common(1)[0][0]
        report.add("references_intact", ok, kind=fk["kind"])


def _score_pixels(
    report: Report,
    fk: dict[str, Any],
    source: Dataset,
    out_ds: Dataset | None,
    masks: dict[str, np.ndarray],
) -> None:
    kind, rel = fk["kind"], fk["path"]
    if fk["rows"] == 0:
        return
    before = _pixels(source)
    after: np.ndarray | None = None
    if out_ds is not None and "PixelData" in out_ds:
        try:
            after = _pixels(out_ds)
        except Exception as exc:
            report.problems.append({"file": rel, "problem": f"pixels: {type(exc).__name__}"})
    if after is not None and after.shape != before.shape:
        report.problems.append(
            {"file": rel, "problem": f"pixel shape {after.shape} != {before.shape}"}
        )
        after = None
    if out_ds is not None and _valid_header(fk, out_ds):
        report.add("valid_dicom", after is not None, kind=kind)
    for item in fk["burned_in"]:
        mask = masks[item["mask"]]
        x, y, w, h = item["box"]
        fractions = []
        flat = []
        for f in item["frames"]:
            if after is None:
                break
            b = before[f, y : y + h, x : x + w, :]
            a = after[f, y : y + h, x : x + w, :]
            changed = np.any(a != b, axis=-1)
            fractions.append(float(changed[mask].mean()))
            flat.append(bool(np.all(a == a.reshape(-1, a.shape[-1])[0])))
        if item["is_phi"]:
            if out_ds is None:  # nothing released
                ok = True
            elif after is None:  # cannot check: count as leaked
                ok = False
            else:
                ok = all(
                    fr >= REDACTED_FRACTION or fl for fr, fl in zip(fractions, flat, strict=True)
                )
                report.glyph_change.append(min(fractions))
            report.add("burned_in_phi_recall", ok, kind=kind, entity_type=item["type"])
            if not ok and out_ds is not None:
                report.leaks.append(
                    {
                        "file": rel,
                        "path": f"pixels frame(s) {item['frames'][:3]}",
                        "type": item["type"],
                        "where": "burned_in",
                        "value": item["text"],
                        "box": item["box"],
                    }
                )
        else:
            kept = after is not None and all(fr <= 1.0 - KEPT_FRACTION for fr in fractions)
            report.add("burned_in_labels_kept", kept, kind=kind, entity_type=item["type"])
            if not kept and after is not None:  # a label is not PHI: its text may be shown
                report.problems.append(
                    {
                        "file": rel,
                        "problem": f"label {item['text']!r} at {item['box']} masked "
                        f"({100 * max(fractions):.0f}% of its glyph pixels changed)",
                    }
                )
    outside = np.ones(before.shape[1:3], dtype=bool)
    for item in fk["burned_in"]:
        x, y, w, h = item["box"]
        outside[max(0, y - MARGIN) : y + h + MARGIN, max(0, x - MARGIN) : x + w + MARGIN] = False
    if after is None:
        report.add("pixels_outside_text", False, kind=kind)
        return
    same = np.all(after == before, axis=-1)[:, outside]
    report.add("pixels_outside_text", bool(same.all()), kind=kind)
    if not same.all():
        changed = np.any(after != before, axis=-1) & outside
        _, ys, xs = np.nonzero(changed)
        report.problems.append(
            {
                "file": rel,
                "problem": f"{int((~same).sum())} pixels changed outside text, within x "
                f"{xs.min()}-{xs.max()} y {ys.min()}-{ys.max()}",
            }
        )
    report.outside_pixels.passed += int(same.sum())
    report.outside_pixels.total += int(same.size)


def evaluate_cli(
    corpus: str | Path, output: str | Path, *, as_json: bool = False, audit: str | None = None
) -> int:
    """Print the report (text or JSON); return 0 when clean, 1 when PHI leaked or files failed."""
    report = evaluate(corpus, output, audit=audit)
    if as_json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(report.to_text())
    return 0 if report.clean else 1
