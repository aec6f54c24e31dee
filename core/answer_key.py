"""The answer key of a synthetic corpus: schema, reading and writing, shared helpers.

``dicomscrub samples generate OUT`` writes the DICOM files under ``OUT/dicom/``
and, next to them, ``OUT/answer_key.json`` plus ``OUT/answer_key_masks.npz``
(the exact glyph pixels of every burned-in text item). The scorer
(:mod:`dicomscrub.core.evaluate`) reads both.

Schema (``answer_key.json``, ``"schema": "dicomscrub-answer-key/1"``)::

    {
      "schema": "dicomscrub-answer-key/1",
      "generator": {"seed": 0, "patients": 3, "studies_per_patient": 1, "version": "..."},
      "dicom_dir": "dicom",                    # DICOM files, relative to the corpus root
      "masks": "answer_key_masks.npz",         # glyph masks, one array per burned-in item
      "files": [FileKey, ...]
    }

    FileKey = {
      "path": "p01/st1/se2_ct/0001.dcm",       # relative to dicom_dir
      "kind": "ct",                            # ct mr us us_cine dx cr sc sr
      "modality": "CT", "transfer_syntax": "1.2.840.10008.1.2.1",
      "patient": "P01", "study": "P01-S1",
      "frames": 1, "rows": 512, "columns": 512, "samples_per_pixel": 1,   # 0 rows: no pixels
      "header_phi": [PlantedValue, ...],   # every planted identifying value
      "free_text": [FreeText, ...],        # descriptors with PHI fragments and words to keep
      "preserve": [{"path": "Rows", "value": 512}, ...],   # must survive unchanged
      "uids": [{"path": "SOPInstanceUID", "value": "1.2...", "role": "sop"}, ...],
      "dates": [{"path": "StudyDate", "value": "20210314"}, ...],  # for interval checks
      "burned_in": [BurnedIn, ...]
    }

    PlantedValue = {"path": "RequestAttributesSequence[0].AccessionNumber",
                    "tag": "(0008,0050)", "value": "A12345678", "type": "ID",
                    "where": "top" | "sequence" | "private" | "free_text",
                    "needles": ["A12345678"]}
    FreeText = {"path": "StudyDescription", "value": "CT CHEST W CONTRAST - f/u for JANE DOE",
                "keep": ["CT", "CHEST", "W", "CONTRAST", "f/u", "for"],
                "phi": ["JANE DOE"]}
    BurnedIn = {"mask": "m17", "text": "DOE^JANE", "is_phi": true, "type": "PERSON",
                "frames": [0, 1, ...], "box": [x, y, width, height], "rotation": 0 | 90,
                "font": "dejavu-sans-mono", "size": 14}

``path`` grammar: keywords joined by ``.``, sequence items as ``[i]``, private or
unknown elements as ``(gggg,eeee)``, file meta elements prefixed ``meta.``.

A planted value counts as leaked when any of its ``needles`` occurs in the
output, case-insensitively, not inside a longer run of letters or digits.
Needles are the value itself and its identifying parts: each name part of at
least three letters, every common spelling of a date, the digits of a phone
number, the street line, city and postal code of an address.

``mask`` names an array in the ``.npz``: a boolean array of the box's shape,
``True`` where a glyph pixel was drawn (rendered coverage of at least 50%).

Examples
--------
>>> date_needles("20210314")[:4]
['20210314', '2021-03-14', '2021/03/14', '03/14/2021']
>>> person_needles("DOE^JANE^Q")
['DOE', 'JANE']
>>> split_path("RequestAttributesSequence[0].(0029,1010)")
[('RequestAttributesSequence', 0), ('(0029,1010)', None)]
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.tag import Tag

SCHEMA = "dicomscrub-answer-key/1"
KEY_NAME = "answer_key.json"
MASKS_NAME = "answer_key_masks.npz"
DICOM_DIR = "dicom"


class PlantedValue(TypedDict):
    """One planted identifying header value (see the module docstring)."""

    path: str
    tag: str
    value: str
    type: str
    where: str
    needles: list[str]


class FreeText(TypedDict):
    """A free-text element holding PHI fragments next to words that must survive."""

    path: str
    value: str
    keep: list[str]
    phi: list[str]


class BurnedIn(TypedDict):
    """One burned-in text item."""

    mask: str
    text: str
    is_phi: bool
    type: str
    frames: list[int]
    box: list[int]
    rotation: int
    font: str
    size: int


class FileKey(TypedDict):
    """Everything planted in one file."""

    path: str
    kind: str
    modality: str
    transfer_syntax: str
    patient: str
    study: str
    frames: int
    rows: int
    columns: int
    samples_per_pixel: int
    header_phi: list[PlantedValue]
    free_text: list[FreeText]
    preserve: list[dict[str, Any]]
    uids: list[dict[str, str]]
    dates: list[dict[str, str]]
    burned_in: list[BurnedIn]


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def date_needles(yyyymmdd: str) -> list[str]:
    """Return the spellings of a DICOM date that count as the same date.

    Examples
    --------
    >>> date_needles("19750102")
    ['19750102', '1975-01-02', '1975/01/02', '01/02/1975', '02.01.1975', '02/01/1975', \
'02-JAN-1975', '2-JAN-1975', '02-JAN-75', '02 JAN 1975', 'JAN 02, 1975', 'JAN 2, 1975']
    """
    d = _dt.datetime.strptime(yyyymmdd[:8], "%Y%m%d").date()
    mon = _MONTHS[d.month - 1]
    spellings = [
        f"{d:%Y%m%d}",
        f"{d:%Y-%m-%d}",
        f"{d:%Y/%m/%d}",
        f"{d:%m/%d/%Y}",
        f"{d:%d.%m.%Y}",
        f"{d:%d/%m/%Y}",
        f"{d.day:02d}-{mon}-{d.year}",
        f"{d.day}-{mon}-{d.year}",
        f"{d.day:02d}-{mon}-{d.year % 100:02d}",
        f"{d.day:02d} {mon} {d.year}",
        f"{mon} {d.day:02d}, {d.year}",
        f"{mon} {d.day}, {d.year}",
    ]
    return list(dict.fromkeys(spellings))


def person_needles(name: str) -> list[str]:
    """Return the identifying parts of a person name (``^``-separated or free form).

    Parts shorter than three letters (initials, suffixes) are not needles.

    Examples
    --------
    >>> person_needles("Dr. Maria Lopez-Smith")
    ['Maria', 'Lopez-Smith']
    """
    parts = re.split(r"[\^\s,]+", name)
    skip = {"DR", "DR.", "MD", "PHD", "MR", "MRS", "MS", "JR", "SR"}
    return [p for p in parts if len(p.strip(".")) >= 3 and p.upper() not in skip]


def digits_needles(value: str) -> list[str]:
    """Return a value and, when it has at least 7 digits, its digits alone (phones).

    Examples
    --------
    >>> digits_needles("507-843-9150")
    ['507-843-9150', '5078439150']
    """
    digits = re.sub(r"\D", "", value)
    return [value, digits] if len(digits) >= 7 and digits != value else [value]


def needle_pattern(needles: list[str]) -> re.Pattern[str]:
    """Compile the leak pattern of a planted value.

    A needle matches case-insensitively when it is not part of a longer run of
    letters or digits.

    Examples
    --------
    >>> bool(needle_pattern(["DOE"]).search("name=DOE^JANE"))
    True
    >>> bool(needle_pattern(["DOE"]).search("DOES"))
    False
    """
    alternatives = "|".join(re.escape(n) for n in sorted(set(needles), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])", re.IGNORECASE)


# --- paths -----------------------------------------------------------------------------------

_STEP = re.compile(r"^(?P<name>\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)|[A-Za-z0-9]+)(?:\[(?P<i>\d+)\])?$")


def split_path(path: str) -> list[tuple[str, int | None]]:
    """Split a key path into ``(name, item index or None)`` steps (see the schema)."""
    steps: list[tuple[str, int | None]] = []
    for part in path.split("."):
        m = _STEP.match(part)
        if m is None:
            raise ValueError(f"bad answer-key path step {part!r}")
        index = m.group("i")
        steps.append((m.group("name"), int(index) if index is not None else None))
    return steps


def _tag_of(name: str) -> int:
    if name.startswith("("):
        return int(Tag(int(name[1:5], 16), int(name[6:10], 16)))
    tag = pydicom.datadict.tag_for_keyword(name)
    if tag is None:
        raise ValueError(f"unknown DICOM keyword {name!r} in answer-key path")
    return int(tag)


def resolve(ds: pydicom.Dataset, path: str) -> DataElement | None:
    """Return the element at ``path`` in ``ds`` (``meta.`` for file meta), or ``None``.

    Examples
    --------
    >>> ds = pydicom.Dataset(); ds.PatientID = "X1"
    >>> resolve(ds, "PatientID").value
    'X1'
    >>> resolve(ds, "OtherPatientIDsSequence[0].PatientID") is None
    True
    """
    current: pydicom.Dataset = ds
    if path.startswith("meta."):
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            return None
        current = meta
        path = path[len("meta.") :]
    steps = split_path(path)
    for n, (name, index) in enumerate(steps):
        tag = _tag_of(name)
        if tag not in current:
            return None
        elem = current[tag]
        if n == len(steps) - 1:
            return elem if index is None else None
        if index is None or elem.VR != "SQ" or index >= len(elem.value):
            return None
        current = elem.value[index]
    return None


# --- files -----------------------------------------------------------------------------------


def load_answer_key(corpus: str | Path) -> dict[str, Any]:
    """Read ``answer_key.json`` of a corpus and check its schema."""
    path = Path(corpus) / KEY_NAME
    try:
        key: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        from .errors import ConfigurationError

        raise ConfigurationError(
            f"{path} not found: CORPUS must be a directory made by 'dicomscrub samples generate'"
        ) from None
    if key.get("schema") != SCHEMA:
        from .errors import ConfigurationError

        raise ConfigurationError(f"{path}: unknown answer-key schema {key.get('schema')!r}")
    return key


def save_masks(path: str | Path, masks: Mapping[str, np.ndarray]) -> None:
    """Write boolean masks to an ``.npz`` that ``numpy.load`` reads, byte-identically per input.

    ``numpy.savez_compressed`` stamps the current time into the zip; this writer
    uses a fixed timestamp so that a corpus is reproducible byte for byte.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(masks):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(masks[name], dtype=bool))
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_masks(corpus: str | Path) -> dict[str, np.ndarray]:
    """Read every glyph mask of a corpus (name -> boolean array of the item's box)."""
    with np.load(Path(corpus) / MASKS_NAME) as data:
        return {name: data[name].astype(bool) for name in data.files}
