"""A deterministic synthetic PHI corpus with an answer key.

``generate_corpus(out, seed=0, patients=3, studies_per_patient=1)`` writes
realistic-looking studies of synthetic patients under ``out/dicom/`` and, next
to them, ``out/answer_key.json`` and ``out/answer_key_masks.npz`` (schema in
:mod:`dicomscrub.core.answer_key`). The same seed gives byte-identical files.

Each study follows one of three templates, in turn:

=====  =========================================================================
``ct``  CT chest: 3 slices (16-bit signed, rescale; explicit VR, implicit VR,
        JPEG 2000 lossless), a dose-report screenshot (secondary capture, RGB)
        and an SR report referencing the images.
``mr``  MR head (16-bit unsigned; explicit VR and RLE), a large chest DX
        (explicit VR, small text) and a MONOCHROME1 CR (JPEG 2000 lossless).
``us``  Ultrasound: two RGB frames with a text banner (JPEG baseline and
        explicit VR), a 10-frame cine (RLE; same overlay on every frame plus a
        frame counter), a worksheet screenshot (implicit VR) and an SR report.
=====  =========================================================================

So the default corpus (3 patients, 1 study each) holds every kind: 14 files.

Planted header PHI: the identifying attributes, PHI inside sequences (two
levels deep and, in SR content, three), private tags (also inside a private
sequence), and PHI fragments inside free-text descriptors next to words that
must survive. Burned-in text uses several fonts, sizes, colours and places,
some rotated by 90 degrees, with non-PHI labels beside the PHI.

Examples
--------
>>> import tempfile, json, pathlib
>>> out = tempfile.mkdtemp()
>>> print(generate_corpus(out, patients=1))  # doctest: +ELLIPSIS
5 files (ct 3, sc 1, sr 1) for 1 patients, 1 studies, seed 0 -> .../dicom; answer key ...
>>> key = json.loads((pathlib.Path(out) / "answer_key.json").read_text())
>>> key["files"][0]["kind"], key["files"][0]["header_phi"][0]["path"]
('ct', 'PatientName')
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from faker import Faker
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from . import __version__
from .answer_key import (
    DICOM_DIR,
    KEY_NAME,
    MASKS_NAME,
    SCHEMA,
    BurnedIn,
    FileKey,
    FreeText,
    PlantedValue,
    date_needles,
    digits_needles,
    person_needles,
    save_masks,
)
from .sample_images import (
    Canvas,
    TextItem,
    check_fonts,
    chest_radiograph,
    ct_slice,
    mr_head,
    render_alpha,
    ultrasound_frame,
    window_to_8bit,
)

UID_ROOT = "1.2.826.0.1.3680043.8.498."
TEMPLATES = ("ct", "mr", "us")

SOP_CLASS = {
    "ct": UID("1.2.840.10008.5.1.4.1.1.2"),
    "mr": UID("1.2.840.10008.5.1.4.1.1.4"),
    "us": UID("1.2.840.10008.5.1.4.1.1.6.1"),
    "us_cine": UID("1.2.840.10008.5.1.4.1.1.3.1"),
    "dx": UID("1.2.840.10008.5.1.4.1.1.1.1"),
    "cr": UID("1.2.840.10008.5.1.4.1.1.1"),
    "sc": UID("1.2.840.10008.5.1.4.1.1.7"),
    "sr": UID("1.2.840.10008.5.1.4.1.1.88.11"),
}
MODALITY = {"ct": "CT", "mr": "MR", "us": "US", "us_cine": "US", "dx": "DX", "cr": "CR"}
MODALITY.update({"sc": "OT", "sr": "SR"})

# Words of the planted free text and labels: never used as a name part.
_VOCABULARY_TEXT = """
CT CHEST W CONTRAST WITH WO MRI BRAIN XR US ABDOMEN COMPLETE AXIAL SAG LIVER SOFT TISSUE
COMPARED PRIOR FROM NO CHANGE FINDINGS ACUTE ABNORMALITY REQUESTED BY PORTABLE STANDING
DOSE REPORT PATIENT EXAM PAGE WORKSHEET SPLEEN KIDNEY GAIN MEMORIAL MEDICAL CENTER
HOSPITAL REGIONAL IMAGING CLINIC SERIES FOLLOW HEAD NECK SPINE LUNG HEART PHONE DISCUSSED
IMPRESSION STABLE NODULE RIGHT LEFT UPPER LOWER LOBE VIEW VIEWS TWO PA LAT AP DR
"""
VOCABULARY = frozenset(_VOCABULARY_TEXT.split())


# --- deterministic randomness ----------------------------------------------------------------


def _rng(seed: int, *labels: str) -> np.random.Generator:
    entropy = [seed, *(zlib.crc32(label.encode()) for label in labels)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _digits(rng: np.random.Generator, n: int) -> str:
    return str(int(rng.integers(1, 10))) + "".join(str(int(d)) for d in rng.integers(0, 10, n - 1))


@dataclass(frozen=True)
class Person:
    """A synthetic person; ``pn`` is the DICOM PN value."""

    family: str
    given: str
    middle: str
    prefix: str = ""

    @property
    def pn(self) -> str:
        """``FAMILY^GIVEN^M`` (patients upper case, staff as generated)."""
        value = f"{self.family}^{self.given}^{self.middle}"
        return value + (f"^{self.prefix}" if self.prefix else "")

    @property
    def display(self) -> str:
        """``Given Family``."""
        return f"{self.given} {self.family}"


@dataclass
class Patient:
    """A synthetic patient and every identifier planted for them."""

    key: str
    name: Person
    sex: str
    birth: dt.date
    mrn: str
    outside_mrn: str
    other_id: str
    account: str
    member_id: str
    street: str
    city: str
    state: str
    zip: str
    phone: str
    email: str

    @property
    def address(self) -> str:
        """One-line postal address."""
        return f"{self.street}, {self.city}, {self.state} {self.zip}"


@dataclass
class Institution:
    """A synthetic hospital."""

    name: str
    word: str  # its distinctive word (a surname)
    street: str
    city: str
    state: str
    zip: str

    @property
    def address(self) -> str:
        """One-line postal address."""
        return f"{self.street}, {self.city}, {self.state} {self.zip}"


@dataclass
class Study:
    """A synthetic study of one patient."""

    patient: Patient
    key: str
    template: str
    uid: str
    date: dt.date
    time: str
    prior_date: dt.date
    accession: str
    study_id: str
    prior_accession: str
    requested_id: str
    step_id: str
    institution: Institution
    referring: Person
    performing: Person
    operator: Person
    npi: str
    station: str
    serial: str


class _Names:
    """Faker-backed names whose parts are unique, at least 3 ASCII letters, not vocabulary."""

    def __init__(self, seed: int) -> None:
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.used: set[str] = set(VOCABULARY)

    def _fresh(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            value = make()
            fresh = value.isascii() and value.isalpha() and len(value) >= 3
            if fresh and value.upper() not in self.used:
                self.used.add(value.upper())
                return value
        raise RuntimeError("could not draw a fresh synthetic name")  # pragma: no cover

    def person(self, sex: str, *, upper: bool, prefix: str = "") -> Person:
        first = self.fake.first_name_female if sex == "F" else self.fake.first_name_male
        family = self._fresh(self.fake.last_name)
        given = self._fresh(first)
        middle = self.fake.random_uppercase_letter()
        if upper:
            return Person(family.upper(), given.upper(), middle, prefix)
        return Person(family, given, middle, prefix)

    def word(self) -> str:
        return self._fresh(self.fake.last_name)

    def city(self) -> str:
        return self._fresh(lambda: self.fake.city().replace(" ", ""))

    def street(self) -> str:
        return f"{self.fake.building_number()} {self.word()} {self.fake.street_suffix()}"


def _date_between(rng: np.random.Generator, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=int(rng.integers(0, (end - start).days)))


def _make_people(seed: int, patients: int, studies_per_patient: int) -> list[Study]:
    names = _Names(seed)
    institutions = []
    for i in range(max(2, min(4, patients))):
        word = names.word()
        suffix = ("Memorial Hospital", "Medical Center", "Regional Hospital", "Imaging Center")[i]
        institutions.append(
            Institution(
                f"{word} {suffix}",
                word,
                names.street(),
                names.city(),
                names.fake.state_abbr(),
                names.fake.zipcode(),
            )
        )
    studies: list[Study] = []
    for p in range(patients):
        rng = _rng(seed, "patient", str(p))
        sex = "F" if rng.random() < 0.5 else "M"
        area = int(rng.integers(201, 990))
        person = names.person(sex, upper=True)
        patient = Patient(
            key=f"P{p + 1:02d}",
            name=person,
            sex=sex,
            birth=_date_between(rng, dt.date(1936, 1, 1), dt.date(2004, 12, 31)),
            mrn=_digits(rng, 8),
            outside_mrn=_digits(rng, 10),
            other_id=f"H{_digits(rng, 7)}",
            account=f"ACCT{_digits(rng, 9)}",
            member_id=f"W{_digits(rng, 9)}",
            street=names.street(),
            city=names.city(),
            state=names.fake.state_abbr(),
            zip=names.fake.zipcode(),
            phone=f"{area}-{int(rng.integers(200, 1000))}-{_digits(rng, 4)}",
            email=f"{person.given.lower()}.{person.family.lower()}{int(rng.integers(10, 99))}"
            "@example.org",
        )
        dates = sorted(
            _date_between(rng, dt.date(2015, 1, 1), dt.date(2024, 12, 31))
            for _ in range(studies_per_patient)
        )
        for s, date in enumerate(dates):
            g = len(studies)
            srng = _rng(seed, "study", str(p), str(s))
            template = TEMPLATES[g % len(TEMPLATES)]
            institution = institutions[g % len(institutions)]
            studies.append(
                Study(
                    patient=patient,
                    key=f"{patient.key}-S{s + 1}",
                    template=template,
                    uid=generate_uid(UID_ROOT, [str(seed), "study", str(p), str(s)]),
                    date=date,
                    time=f"{int(srng.integers(7, 19)):02d}{int(srng.integers(0, 60)):02d}"
                    f"{int(srng.integers(0, 60)):02d}",
                    prior_date=date - dt.timedelta(days=int(srng.integers(30, 400))),
                    accession=f"A{_digits(srng, 8)}",
                    study_id=_digits(srng, 5),
                    prior_accession=f"A{_digits(srng, 8)}",
                    requested_id=f"RP{_digits(srng, 7)}",
                    step_id=f"SPS{_digits(srng, 6)}",
                    institution=institution,
                    referring=names.person("F" if srng.random() < 0.5 else "M", upper=False),
                    performing=names.person("F" if srng.random() < 0.5 else "M", upper=False),
                    operator=names.person("F" if srng.random() < 0.5 else "M", upper=False),
                    npi=_digits(srng, 10),
                    station=f"{institution.word.upper()[:8]}{template.upper()}"
                    f"{srng.integers(1, 9)}",
                    serial=f"SN{_digits(srng, 7)}",
                )
            )
    return studies


# --- header planting -------------------------------------------------------------------------


def _fmt_date(d: dt.date) -> str:
    return f"{d:%Y%m%d}"


def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


@dataclass
class _Record:
    """The answer-key entries of one file, filled while its header is built."""

    header_phi: list[PlantedValue] = field(default_factory=list)
    free_text: list[FreeText] = field(default_factory=list)
    preserve: list[dict[str, Any]] = field(default_factory=list)
    uids: list[dict[str, str]] = field(default_factory=list)
    dates: list[dict[str, str]] = field(default_factory=list)

    def phi(
        self,
        ds: Dataset,
        prefix: str,
        keyword: str,
        value: str,
        kind: str,
        where: str,
        needles: list[str] | None = None,
    ) -> None:
        setattr(ds, keyword, value)
        self.note(prefix + keyword, _tag_str(ds, keyword), value, kind, where, needles)

    def note(
        self,
        path: str,
        tag: str,
        value: str,
        kind: str,
        where: str,
        needles: list[str] | None = None,
    ) -> None:
        if needles is None:
            needles = _needles(value, kind)
        self.header_phi.append(
            PlantedValue(path=path, tag=tag, value=value, type=kind, where=where, needles=needles)
        )

    def text(
        self,
        ds: Dataset,
        prefix: str,
        keyword: str,
        parts: Sequence[tuple[str, str | None]],
    ) -> None:
        """Set a free-text element from (text, PHI type) parts.

        A part's type is ``None`` for words that must survive and ``""`` for
        words that are neither (a title such as "Dr" may go with the name).
        """
        value = "".join(text for text, _ in parts)
        setattr(ds, keyword, value)
        path = prefix + keyword
        keep: list[str] = []
        phi: list[str] = []
        for text, kind in parts:
            if kind == "":
                continue  # neither PHI nor a word that must survive (a title like "Dr")
            if kind is None:
                keep.extend(
                    w for w in text.replace(",", " ").split() if any(c.isalnum() for c in w)
                )
            else:
                phi.append(text)
                self.note(path, _tag_str(ds, keyword), text, kind, "free_text")
        self.free_text.append(FreeText(path=path, value=value, keep=keep, phi=phi))

    def uid(self, ds: Dataset, prefix: str, keyword: str, value: str, role: str) -> None:
        setattr(ds, keyword, value)
        self.uids.append({"path": prefix + keyword, "value": value, "role": role})

    def date(self, ds: Dataset, prefix: str, keyword: str, value: str) -> None:
        setattr(ds, keyword, value)
        self.dates.append({"path": prefix + keyword, "value": value[:8]})


def _tag_str(ds: Dataset, keyword: str) -> str:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _needles(value: str, kind: str) -> list[str]:
    if kind == "PERSON":
        return person_needles(value)
    if kind == "DATE":
        return date_needles(value if value.isdigit() else _parse_display_date(value))
    if kind == "PHONE":
        return digits_needles(value)
    return [value]


def _parse_display_date(value: str) -> str:
    return dt.datetime.strptime(value, "%m/%d/%Y").strftime("%Y%m%d")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


PROCEDURE = {
    "ct": "CT CHEST W CONTRAST",
    "mr": "MRI BRAIN WO CONTRAST",
    "us": "US ABDOMEN COMPLETE",
}


def _base_header(
    study: Study, kind: str, series: int, instance: int, sop_uid: str, series_uid: str, rec: _Record
) -> Dataset:
    """Patient, study, series, equipment and instance modules with planted PHI."""
    p = study.patient
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SOP_CLASS[kind]
    rec.uid(ds, "", "SOPInstanceUID", sop_uid, "sop")
    rec.uid(ds, "", "StudyInstanceUID", study.uid, "study")
    rec.uid(ds, "", "SeriesInstanceUID", series_uid, "series")
    ds.Modality = MODALITY[kind]
    # patient
    rec.phi(ds, "", "PatientName", p.name.pn, "PERSON", "top")
    rec.phi(ds, "", "PatientID", p.mrn, "ID", "top")
    ds.IssuerOfPatientID = "MRN"
    rec.phi(ds, "", "PatientBirthDate", _fmt_date(p.birth), "DATE", "top")
    ds.PatientSex = p.sex
    ds.PatientAge = _age(p.birth, study.date)
    rec.phi(ds, "", "PatientAddress", p.address, "LOCATION", "top", [p.street, p.city, p.zip])
    rec.phi(ds, "", "PatientTelephoneNumbers", p.phone, "PHONE", "top")
    other = Dataset()
    rec.phi(other, "OtherPatientIDsSequence[0].", "PatientID", p.other_id, "ID", "sequence")
    other.IssuerOfPatientID = "OUTSIDE"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = DicomSequence([other])
    # study
    rec.date(ds, "", "StudyDate", _fmt_date(study.date))
    rec.note("StudyDate", "(0008,0020)", _fmt_date(study.date), "DATE", "top")
    ds.StudyTime = study.time
    rec.phi(ds, "", "AccessionNumber", study.accession, "ID", "top")
    rec.phi(ds, "", "StudyID", study.study_id, "ID", "top")
    rec.phi(ds, "", "ReferringPhysicianName", study.referring.pn, "PERSON", "top")
    rec.text(
        ds,
        "",
        "StudyDescription",
        [(f"{PROCEDURE[study.template]} - f/u for ", None), (p.name.display.title(), "PERSON")],
    )
    request = Dataset()
    rec.phi(request, "RequestAttributesSequence[0].", "AccessionNumber", study.accession, "ID",
            "sequence")  # fmt: skip
    rec.phi(
        request,
        "RequestAttributesSequence[0].",
        "RequestedProcedureID",
        study.requested_id,
        "ID",
        "sequence",
    )
    rec.phi(
        request,
        "RequestAttributesSequence[0].",
        "ScheduledProcedureStepID",
        study.step_id,
        "ID",
        "sequence",
    )
    rec.text(
        request,
        "RequestAttributesSequence[0].",
        "RequestedProcedureDescription",
        [
            (f"{PROCEDURE[study.template]} requested by ", None),
            ("Dr ", ""),
            (study.referring.family, "PERSON"),
        ],
    )
    ds.RequestAttributesSequence = DicomSequence([request])
    # series and equipment
    rec.date(ds, "", "SeriesDate", _fmt_date(study.date))
    ds.SeriesTime = study.time
    ds.SeriesNumber = series
    rec.phi(ds, "", "PerformingPhysicianName", study.performing.pn, "PERSON", "top")
    ident = Dataset()
    code = _code(study.npi, "NPI", "National Provider Identifier")
    prefix = "PerformingPhysicianIdentificationSequence[0].PersonIdentificationCodeSequence[0]."
    rec.note(prefix + "CodeValue", "(0008,0100)", study.npi, "ID", "sequence")
    ident.PersonIdentificationCodeSequence = DicomSequence([code])
    inst_needles = [study.institution.name, study.institution.word]
    rec.phi(ident, "PerformingPhysicianIdentificationSequence[0].", "InstitutionName",
            study.institution.name, "ORG", "sequence", inst_needles)  # fmt: skip
    ds.PerformingPhysicianIdentificationSequence = DicomSequence([ident])
    rec.phi(ds, "", "OperatorsName", study.operator.pn, "PERSON", "top")
    rec.phi(
        ds,
        "",
        "InstitutionName",
        study.institution.name,
        "ORG",
        "top",
        [study.institution.name, study.institution.word],
    )
    inst = study.institution
    rec.phi(ds, "", "InstitutionAddress", inst.address, "LOCATION", "top", [inst.street, inst.city])
    rec.phi(ds, "", "StationName", study.station, "DEVICE", "top")
    rec.phi(ds, "", "DeviceSerialNumber", study.serial, "DEVICE", "top")
    ds.Manufacturer = "SYNTHETIC MEDICAL"
    ds.ManufacturerModelName = {"ct": "SynCT 64", "mr": "SynMR 1.5T", "us": "SynUS 9"}.get(
        kind, "SynX 2"
    )
    ds.SoftwareVersions = "4.2.1"
    # instance
    ds.InstanceNumber = instance
    rec.date(ds, "", "ContentDate", _fmt_date(study.date))
    ds.ContentTime = study.time
    # private block with PHI, also inside a private sequence
    block = ds.private_block(0x0029, "SYNTHETIC_RIS 1.0", create=True)
    block.add_new(0x10, "LO", p.account)
    rec.note("(0029,1010)", "(0029,1010)", p.account, "ID", "private")
    block.add_new(0x11, "LO", p.email)
    rec.note("(0029,1011)", "(0029,1011)", p.email, "EMAIL", "private")
    block.add_new(0x12, "LT", f"Insurance member {p.member_id} verified by phone")
    rec.note("(0029,1012)", "(0029,1012)", p.member_id, "ID", "private")
    inner = Dataset()
    inner_block = inner.private_block(0x0029, "SYNTHETIC_RIS 1.0", create=True)
    inner_block.add_new(0x10, "LO", study.prior_accession)
    block.add_new(0x20, "SQ", DicomSequence([inner]))
    rec.note("(0029,1020)[0].(0029,1010)", "(0029,1010)", study.prior_accession, "ID", "private")
    return ds


def _preserve(rec: _Record, ds: Dataset, keywords: Sequence[str]) -> None:
    for keyword in keywords:
        if keyword in ds:
            value = ds.data_element(keyword)
            assert value is not None
            rec.preserve.append({"path": keyword, "value": _json_value(value.value)})


def _json_value(value: Any) -> Any:
    if isinstance(value, pydicom.multival.MultiValue | list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, int | float | str):
        return value if not isinstance(value, pydicom.valuerep.DSfloat) else float(value)
    return str(value)


PRESERVE_IMAGE = (
    "Modality",
    "SOPClassUID",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "NumberOfFrames",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "RescaleIntercept",
    "RescaleSlope",
    "WindowCenter",
    "WindowWidth",
    "KVP",
    "SeriesNumber",
    "InstanceNumber",
    "Manufacturer",
    "ManufacturerModelName",
    "ImageType",
    "FrameTime",
)


# --- burned-in text per kind ---------------------------------------------------------------

WHITE = (255, 255, 255)
Colour = float | tuple[float, float, float]

# Non-PHI text items carry the type "LABEL".
LABEL = "LABEL"


def _width(text: str, font: str, size: int) -> int:
    """Width (pixels) of ``text`` as :func:`_put` burns it, unrotated."""
    return int(render_alpha(text, font, size, 0).shape[1])


def _put(
    c: Canvas,
    text: str,
    xy: tuple[int, int],
    kind: str,
    font: str,
    size: int,
    colour: Colour,
    anchor: str = "lt",
    rotation: int = 0,
) -> TextItem:
    """Burn one item; ``kind`` is its PHI type, or ``LABEL`` for text that is not PHI."""
    return c.text(text, xy, font=font, size=size, color=colour, is_phi=kind != LABEL,
                  kind=kind, anchor=anchor, rotation=rotation)  # fmt: skip


def _column(
    c: Canvas,
    xy: tuple[int, int],
    lines: Sequence[tuple[str, str, str, int, Colour]],
    anchor: str = "lt",
) -> None:
    """Stack ``(text, kind, font, size, colour)`` lines downwards from ``xy``, 10 px apart."""
    x, y = xy
    for text, kind, font, size, colour in lines:
        item = _put(c, text, (x, y), kind, font, size, colour, anchor)
        y = item.box[1] + item.box[3] + 10


def _draw_ct(c: Canvas, st: Study, slice_no: int) -> None:
    p = st.patient
    white, grey = 4095.0, 1180.0  # stored values: HU 3071 and 156 (WW 400 WL 40)
    font = ("dejavu-sans-mono", "pillow-default", "dejavu-sans")[slice_no % 3]
    ink = white if slice_no % 2 == 0 else grey
    age = int(_age(p.birth, st.date)[:3])
    _column(c, (8, 8), [
        (p.name.pn.rsplit("^", 1)[0], "PERSON", font, 14, ink),
        (p.mrn, "ID", font, 14, ink),
        (f"{p.birth:%m/%d/%Y}", "DATE", font, 14, ink),
        (f"{p.sex} {age}Y", LABEL, font, 14, ink),
    ])  # fmt: skip
    _column(c, (504, 8), [
        (st.institution.name, "ORG", "dejavu-sans", 13, ink),
        (f"{st.date.day:02d}-{st.date:%b-%Y}".upper(), "DATE", "dejavu-sans", 13, ink),
        (st.accession, "ID", "dejavu-sans", 13, ink),
    ], anchor="rt")  # fmt: skip
    _put(c, "5.0mm", (8, 480), LABEL, font, 13, white, "lb")
    _put(c, "WW 400 WL 40", (8, 504), LABEL, font, 13, white, "lb")
    _put(c, f"Se:2 Im:{slice_no + 1}", (504, 504), LABEL, font, 13, white, "rb")
    _put(c, "R", (10, 250), LABEL, "dejavu-sans-bold", 22, white)
    _put(c, "L", (502, 250), LABEL, "dejavu-sans-bold", 22, white, "rt")


def _draw_mr(c: Canvas, st: Study, slice_no: int) -> None:
    p = st.patient
    white = 4095.0
    name = p.name.pn.rsplit("^", 1)[0]
    _put(c, name, (314, 40), "PERSON", "dejavu-sans", 13, white, "rt", rotation=90)
    lines: list[tuple[str, str, str, int, Colour]] = [
        (f"{p.birth:%d.%m.%Y}", "DATE", "dejavu-serif", 12, white),
        (st.institution.name, "ORG", "dejavu-serif", 12, 2600.0),
    ]
    if slice_no == 1:
        lines.append((p.mrn, "ID", "pillow-bitmap", 11, white))
    _column(c, (6, 6), lines)
    _put(c, "5.0mm", (6, 294), LABEL, "dejavu-sans-mono", 11, white, "lb")
    _put(c, "TR 500 TE 15", (6, 314), LABEL, "dejavu-sans-mono", 11, white, "lb")
    _put(c, f"Se:3 Im:{slice_no + 7}", (280, 314), LABEL, "dejavu-sans-mono", 11, white, "rb")


def _draw_dx(c: Canvas, st: Study, monochrome1: bool) -> None:
    p = st.patient
    bright = 0.0 if monochrome1 else 4095.0  # MONOCHROME1: low stored values display white
    dim = 1400.0 if monochrome1 else 2900.0
    rows, cols = c.shape
    mono = "dejavu-sans-mono"
    name = p.name.pn.replace("^", " ", 1).rsplit("^", 1)[0]
    _column(c, (20, 20), [
        (name, "PERSON", "pillow-default" if monochrome1 else mono, 18, bright),
        (f"{p.birth:%Y-%m-%d}", "DATE", "pillow-bitmap" if monochrome1 else mono, 14, bright),
        (p.mrn, "ID", mono, 13, bright),
        (st.accession, "ID", mono, 13, bright),
    ])  # fmt: skip
    _put(c, f"{st.date:%m/%d/%Y}", (cols - 20, 20), "DATE", mono, 14, dim, "rt")
    sans, bold = "dejavu-sans", "dejavu-sans-bold"
    if monochrome1:
        _put(c, st.institution.name, (cols - 12, 120), "ORG", sans, 16, bright, "rt", 270)
        _put(c, "L", (cols - 120, rows // 3), LABEL, bold, 48, bright, "rt")
        _put(c, "CHEST PA", (cols // 2, 24), LABEL, sans, 20, bright)
        _put(c, "STANDING", (cols // 2, 60), LABEL, sans, 20, dim)
    else:
        _put(c, st.institution.name, (cols - 20, 48), "ORG", sans, 16, bright, "rt")
        referring = f"{st.referring.family}, {st.referring.given}"  # no "Dr": not PHI
        _put(c, referring, (14, rows // 2), "PERSON", sans, 15, dim, "lt", 90)
        _put(c, "R", (120, rows // 4), LABEL, bold, 64, bright)
        _put(c, "PORTABLE", (cols // 2 - 60, 24), LABEL, sans, 24, bright)
        _put(c, "AP", (cols // 2 - 60, 64), LABEL, sans, 24, bright)
    _put(c, "kVp 90 mAs 3.2", (20, rows - 20), LABEL, mono, 14, dim, "lb")


def _us_banner(c: Canvas, st: Study, *, outside_id: bool, serif: bool, frames: int) -> None:
    p = st.patient
    rows, cols = c.shape
    c.pixels[:, :52, :, :] = (18, 28, 54)
    font = "dejavu-serif" if serif else "dejavu-sans"
    mono = "dejavu-sans-mono"
    name = f"{p.name.family}, {p.name.given}"
    ident = p.outside_mrn if outside_id else p.mrn  # the outside MRN is not in the header
    mi = "MI 0.8 TIS 0.4" if frames == 1 else "MI 1.1 TIS 0.6"
    org = _put(c, st.institution.name, (8, 6), "ORG", font, 13, WHITE)
    # the name in the middle of the top row; where it would touch the institution or the ID
    # (a long name on a narrow cine) it moves next to the institution and shrinks to fit
    left, right = org.box[0] + org.box[2] + 8, cols - 8 - _width(ident, mono, 13) - 8
    x, size = cols // 2 - 20, 14
    while size > 8 and (x < left or x + _width(name, "dejavu-sans-bold", size) > right):
        x, size = left, size - 1
    _put(c, name, (x, 5), "PERSON", "dejavu-sans-bold", size, (255, 220, 0))
    _put(c, ident, (cols - 8, 6), "ID", mono, 13, WHITE, "rt")
    _put(c, f"{st.date:%m/%d/%Y}", (8, 32), "DATE", mono, 11, (0, 200, 255))
    _put(c, mi, (cols - 8, 32), LABEL, mono, 11, (0, 230, 0), "rt")
    _put(c, "C5-1", (cols - 8, 70), LABEL, font, 12, WHITE, "rt")
    _put(c, "16cm", (cols - 8, rows - 40), LABEL, font, 12, WHITE, "rb")
    _put(c, "Sag Liver L-M", (8, rows - 8), LABEL, font, 13, WHITE, "lb")


def _draw_sc_dose(c: Canvas, st: Study) -> None:
    p = st.patient
    rows, cols = c.shape
    c.pixels[:, :36, :, :] = (60, 60, 92)
    c.pixels[:, rows - 40 :, :, :] = (212, 212, 212)
    sans, mono = "dejavu-sans", "dejavu-sans-mono"
    light, label_ink, dark = (222, 222, 222), (160, 160, 170), (20, 20, 20)
    _put(c, "Dose Report", (12, 8), LABEL, "dejavu-sans-bold", 16, WHITE)
    pairs = [
        ("Patient:", p.name.display.upper(), "PERSON"),
        ("MRN:", p.mrn, "ID"),
        ("DOB:", f"{p.birth:%m/%d/%Y}", "DATE"),
        ("Accession:", st.accession, "ID"),
        ("Referring:", st.referring.display, "PERSON"),
    ]
    y = 70
    for label, value, kind in pairs:
        _put(c, label, (380, y), LABEL, sans, 15, label_ink)
        _put(c, value, (500, y), kind, sans, 15, light)
        y += 34
    for text in ("Exam: CT CHEST W CONTRAST", "CTDIvol 12.3 mGy", "DLP 456 mGy*cm"):
        _put(c, text, (380, y + 10), LABEL, mono, 14, light)
        y += 30
    _put(c, st.institution.name, (12, rows - 30), "ORG", sans, 14, dark)
    _put(c, "Page 1 of 1", (cols - 12, rows - 30), LABEL, sans, 14, dark, "rt")


def _draw_sc_worksheet(c: Canvas, st: Study) -> None:
    p = st.patient
    rows, cols = c.shape
    c.pixels[:, :, :, :] = c.pixels * 0.2 + np.array([230.0, 232.0, 236.0]) * 0.8
    dark, blue = (25, 25, 35), (40, 40, 120)
    serif = "dejavu-serif"
    _put(c, "US Worksheet", (12, 10), LABEL, serif, 18, dark)
    _put(c, p.name.display, (12, 50), "PERSON", serif, 15, dark)
    _put(c, f"{p.birth:%b %d, %Y}", (12, 80), "DATE", serif, 15, dark)
    _put(c, p.mrn, (cols - 12, 50), "ID", "dejavu-sans-mono", 14, dark, "rt")
    y = 140
    for text in ("Liver 14.2 cm", "Spleen 10.1 cm", "Right Kidney 10.8 cm", "CBD 4 mm"):
        _put(c, text, (40, y), LABEL, "dejavu-sans", 15, blue)
        y += 32
    _put(c, st.operator.display, (40, rows - 60), "PERSON", "dejavu-sans", 14, dark)
    _put(c, st.institution.name, (cols - 12, rows - 24), "ORG", "pillow-default", 14,
         (90, 90, 90), "rt")  # fmt: skip


# --- files -----------------------------------------------------------------------------------


@dataclass
class _File:
    """One planned instance."""

    kind: str
    series: int
    instance: int
    transfer_syntax: str
    rel_path: str
    sop_uid: str
    series_uid: str
    frames: int = 10  # for us_cine


def _plan(study: Study, seed: int) -> list[_File]:
    t = study.template
    base = f"p{int(study.patient.key[1:]):02d}/st{study.key.rsplit('S', 1)[1]}"
    series: list[tuple[str, list[str]]]
    if t == "ct":
        series = [
            ("ct", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless]),
            ("sc", [ExplicitVRLittleEndian]),
            ("sr", [ExplicitVRLittleEndian]),
        ]
    elif t == "mr":
        series = [
            ("mr", [ExplicitVRLittleEndian, RLELossless]),
            ("dx", [ExplicitVRLittleEndian]),
            ("cr", [JPEG2000Lossless]),
        ]
    else:
        series = [
            ("us", [JPEGBaseline8Bit, ExplicitVRLittleEndian]),
            ("us_cine", [RLELossless]),
            ("sc", [ImplicitVRLittleEndian]),
            ("sr", [ImplicitVRLittleEndian]),
        ]
    files = []
    for s, (kind, syntaxes) in enumerate(series, start=1):
        series_uid = generate_uid(UID_ROOT, [str(seed), study.key, "series", str(s)])
        for i, ts in enumerate(syntaxes, start=1):
            files.append(
                _File(
                    kind=kind,
                    series=s,
                    instance=i,
                    transfer_syntax=ts,
                    rel_path=f"{base}/se{s}_{kind}/{i:04d}.dcm",
                    sop_uid=generate_uid(UID_ROOT, [str(seed), study.key, str(s), str(i)]),
                    series_uid=series_uid,
                )
            )
    return files


def _image_pixels(
    ds: Dataset, f: _File, st: Study, rng: np.random.Generator, frame_of_ref: str, rec: _Record
) -> tuple[Canvas, np.dtype[Any]]:
    """Set the image modules of ``ds`` and return the canvas with text burned in."""
    kind = f.kind
    axial = kind in ("ct", "mr")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if axial else ["DERIVED", "PRIMARY"]
    if kind in ("ct", "mr"):
        rec.uid(ds, "", "FrameOfReferenceUID", frame_of_ref, "frame_of_reference")
        ds.PositionReferenceIndicator = ""
        ds.SliceThickness = "5.0"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-250.0, -250.0, -100.0 + 5.0 * f.instance]
        ds.SliceLocation = -100.0 + 5.0 * f.instance
    dtype: np.dtype[Any]
    if kind == "ct":
        hu = ct_slice(rng, 512)
        canvas = Canvas(hu + 1024.0, max_value=4095, min_value=-976)
        _draw_ct(canvas, st, f.instance - 1)
        dtype = np.dtype(np.int16)
        _grey(ds, 512, 512, bits=16, signed=True)
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelSpacing = [0.78125, 0.78125]
        ds.KVP = "120"
        ds.PixelPaddingValue = -976
        ds.BodyPartExamined = "CHEST"
    elif kind == "mr":
        canvas = Canvas(mr_head(rng, 320), max_value=4095)
        _draw_mr(canvas, st, f.instance - 1)
        dtype = np.dtype(np.uint16)
        _grey(ds, 320, 320, bits=12, signed=False)
        ds.PixelSpacing = [0.75, 0.75]
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.MagneticFieldStrength = "1.5"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.WindowCenter = "1000"
        ds.WindowWidth = "2000"
        ds.BodyPartExamined = "HEAD"
    elif kind in ("dx", "cr"):
        rows, cols = (1536, 1280) if kind == "dx" else (1200, 1000)
        img = chest_radiograph(rng, rows, cols)
        mono1 = kind == "cr"
        canvas = Canvas(4095.0 - img if mono1 else img, max_value=4095)
        _draw_dx(canvas, st, mono1)
        dtype = np.dtype(np.uint16)
        _grey(ds, rows, cols, bits=12, signed=False, mono1=mono1)
        ds.ImagerPixelSpacing = [0.139, 0.139] if kind == "dx" else [0.2, 0.2]
        ds.KVP = "90"
        ds.BodyPartExamined = "CHEST"
        ds.ViewPosition = "AP" if kind == "dx" else "PA"
        ds.WindowCenter = "2048"
        ds.WindowWidth = "4096"
        ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
        if kind == "dx":
            ds.PresentationIntentType = "FOR PRESENTATION"
            ds.ImageType = ["DERIVED", "PRIMARY"]
    elif kind in ("us", "us_cine"):
        frames = 1 if kind == "us" else f.frames
        rows, cols = (480, 640) if kind == "us" else (360, 480)
        grey = np.stack([ultrasound_frame(rng, rows, cols, phase=0.6 * k) for k in range(frames)])
        rgb = np.stack([grey * 1.0, grey * 0.97, grey * 0.9], axis=-1)
        canvas = Canvas(rgb, max_value=255, frames=frames)
        _us_banner(
            canvas,
            st,
            outside_id=f.instance == 1 or kind == "us_cine",
            serif=f.instance == 2,
            frames=frames,
        )
        if frames > 1:
            for k in range(frames):
                canvas.text(
                    f"{k + 1}/{frames}",
                    (cols - 8, rows - 8),
                    font="dejavu-sans-mono",
                    size=12,
                    color=WHITE,
                    is_phi=False,
                    kind="LABEL",
                    anchor="rb",
                    frames=[k],
                )
            ds.NumberOfFrames = frames
            ds.FrameTime = "33.3"
            ds.CineRate = 30
            ds.FrameIncrementPointer = 0x00181063
        dtype = np.dtype(np.uint8)
        _rgb(ds, rows, cols)
    elif kind == "sc":
        rows, cols = 600, 800
        bg = np.zeros((rows, cols, 3)) + np.array([32.0, 32.0, 40.0])
        thumb = window_to_8bit(ct_slice(rng, 320), 40, 400)
        bg[50:370, 20:340, :] = thumb[..., np.newaxis]
        canvas = Canvas(bg, max_value=255)
        if st.template == "ct":
            _draw_sc_dose(canvas, st)
        else:
            _draw_sc_worksheet(canvas, st)
        dtype = np.dtype(np.uint8)
        _rgb(ds, rows, cols)
        ds.ConversionType = "WSD"
    else:  # pragma: no cover - planned kinds only
        raise ValueError(kind)
    return canvas, dtype


def _grey(
    ds: Dataset, rows: int, cols: int, *, bits: int, signed: bool, mono1: bool = False
) -> None:
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0


def _rgb(ds: Dataset, rows: int, cols: int) -> None:
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0


def _set_pixels(ds: Dataset, arr: np.ndarray, ts: str) -> None:
    """Store ``arr`` in ``ds`` with transfer syntax ``ts``."""
    if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW" if arr.dtype.itemsize == 2 else "OB"
        ds.file_meta.TransferSyntaxUID = UID(ts)
    elif ts == JPEGBaseline8Bit:
        frames = arr[np.newaxis] if arr.ndim == 3 else arr
        encoded = []
        for frame in frames:
            buf = io.BytesIO()
            Image.fromarray(frame, "RGB").save(buf, "JPEG", quality=92, subsampling=1)
            encoded.append(buf.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{arr.nbytes / sum(map(len, encoded)):.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    else:
        ds.compress(ts, arr, generate_instance_uid=False)


def _write(ds: Dataset, path: Path) -> None:
    meta = ds.file_meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationVersionName = "SYNTH_CORPUS_1"
    ds.preamble = b"\0" * 128
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _sr_content(st: Study, refs: list[tuple[str, str]], rec: _Record, ds: Dataset) -> None:
    """Basic Text SR content: observer, findings with PHI, image references, a prior date."""
    p = st.patient
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence(
        [_code("18748-4", "LN", "Diagnostic Imaging Report")]
    )
    ds.ContinuityOfContent = "SEPARATE"
    observer = Dataset()
    observer.RelationshipType = "HAS OBS CONTEXT"
    observer.ValueType = "PNAME"
    observer.ConceptNameCodeSequence = DicomSequence(
        [_code("121008", "DCM", "Person Observer Name")]
    )
    rec.phi(observer, "ContentSequence[0].", "PersonName", st.performing.pn, "PERSON", "sequence")
    findings = Dataset()
    findings.RelationshipType = "CONTAINS"
    findings.ValueType = "CONTAINER"
    findings.ConceptNameCodeSequence = DicomSequence([_code("121070", "DCM", "Findings")])
    findings.ContinuityOfContent = "SEPARATE"
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = DicomSequence([_code("121071", "DCM", "Finding")])
    rec.text(
        text,
        "ContentSequence[1].ContentSequence[0].",
        "TextValue",
        [
            ("Findings discussed with ", None),
            (p.name.display, "PERSON"),
            (" by phone at ", None),
            (p.phone, "PHONE"),
            (". Stable nodule in the right upper lobe, no acute abnormality.", None),
        ],
    )
    items = [text]
    for n, (sop_class, sop_uid) in enumerate(refs, start=1):
        image = Dataset()
        image.RelationshipType = "CONTAINS"
        image.ValueType = "IMAGE"
        image.ConceptNameCodeSequence = DicomSequence(
            [_code("121112", "DCM", "Source of Measurement")]
        )
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        rec.uid(
            ref,
            f"ContentSequence[1].ContentSequence[{n}].ReferencedSOPSequence[0].",
            "ReferencedSOPInstanceUID",
            sop_uid,
            "reference",
        )
        image.ReferencedSOPSequence = DicomSequence([ref])
        items.append(image)
    prior = Dataset()
    prior.RelationshipType = "CONTAINS"
    prior.ValueType = "DATE"
    prior.ConceptNameCodeSequence = DicomSequence([_code("111536", "DCM", "Prior exam date")])
    path = f"ContentSequence[1].ContentSequence[{len(items)}]."
    rec.date(prior, path, "Date", _fmt_date(st.prior_date))
    rec.note(path + "Date", "(0040,A121)", _fmt_date(st.prior_date), "DATE", "sequence")
    items.append(prior)
    findings.ContentSequence = DicomSequence(items)
    impression = Dataset()
    impression.RelationshipType = "CONTAINS"
    impression.ValueType = "TEXT"
    impression.ConceptNameCodeSequence = DicomSequence([_code("121073", "DCM", "Impression")])
    rec.text(
        impression,
        "ContentSequence[2].",
        "TextValue",
        [("No acute abnormality. Follow-up CT in 12 months.", None)],
    )
    ds.ContentSequence = DicomSequence([observer, findings, impression])


def _build_file(
    f: _File,
    st: Study,
    seed: int,
    refs: list[tuple[str, str]],
    series_refs: dict[str, list[tuple[str, str]]],
    frame_of_ref: str,
) -> tuple[Dataset, _Record, list[TextItem]]:
    rec = _Record()
    ds = _base_header(st, f.kind, f.series, f.instance, f.sop_uid, f.series_uid, rec)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(f.transfer_syntax)
    rec.uids.append({"path": "meta.MediaStorageSOPInstanceUID", "value": f.sop_uid, "role": "sop"})
    rec.text(
        ds,
        "",
        "SeriesDescription",
        [
            (
                {
                    "ct": "AX 5mm SOFT TISSUE",
                    "mr": "AX T1 SE",
                    "us": "ABDOMEN SAG",
                    "us_cine": "LIVER CINE",
                    "dx": "CHEST AP PORTABLE",
                    "cr": "CHEST PA",
                    "sc": "SCREEN CAPTURE",
                    "sr": "REPORT",
                }[f.kind]
                + " ",
                None,
            ),
            (st.patient.mrn, "ID"),
        ],
    )
    items: list[TextItem] = []
    if f.kind == "sr":
        ds.CompletionFlag = "COMPLETE"
        ds.VerificationFlag = "VERIFIED"
        verifier = Dataset()
        rec.phi(
            verifier,
            "VerifyingObserverSequence[0].",
            "VerifyingObserverName",
            st.performing.pn,
            "PERSON",
            "sequence",
        )
        rec.phi(verifier, "VerifyingObserverSequence[0].", "VerifyingOrganization",
                st.institution.name, "ORG", "sequence",
                [st.institution.name, st.institution.word])  # fmt: skip
        verified = st.date + dt.timedelta(days=1)
        rec.date(
            verifier,
            "VerifyingObserverSequence[0].",
            "VerificationDateTime",
            f"{verified:%Y%m%d}101500",
        )
        ds.VerifyingObserverSequence = DicomSequence([verifier])
        evidence = Dataset()
        rec.uid(
            evidence,
            "CurrentRequestedProcedureEvidenceSequence[0].",
            "StudyInstanceUID",
            st.uid,
            "reference",
        )
        series_items = []
        for s, (series_uid, sops) in enumerate(sorted(series_refs.items())):
            item = Dataset()
            prefix = f"CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[{s}]."
            rec.uid(item, prefix, "SeriesInstanceUID", series_uid, "reference")
            sop_items = []
            for n, (sop_class, sop_uid) in enumerate(sops):
                sop = Dataset()
                sop.ReferencedSOPClassUID = sop_class
                rec.uid(
                    sop,
                    f"{prefix}ReferencedSOPSequence[{n}].",
                    "ReferencedSOPInstanceUID",
                    sop_uid,
                    "reference",
                )
                sop_items.append(sop)
            item.ReferencedSOPSequence = DicomSequence(sop_items)
            series_items.append(item)
        evidence.ReferencedSeriesSequence = DicomSequence(series_items)
        ds.CurrentRequestedProcedureEvidenceSequence = DicomSequence([evidence])
        _sr_content(st, refs, rec, ds)
        ds.file_meta.TransferSyntaxUID = UID(f.transfer_syntax)
        _preserve(
            rec,
            ds,
            (
                "Modality",
                "SOPClassUID",
                "SeriesNumber",
                "InstanceNumber",
                "CompletionFlag",
                "VerificationFlag",
                "Manufacturer",
            ),
        )
        return ds, rec, items
    rng = _rng(seed, f.rel_path)
    if f.kind != "sc":
        rec.date(ds, "", "AcquisitionDate", _fmt_date(st.date))
        ds.AcquisitionTime = st.time
    ds.PatientOrientation = ["L", "P"] if f.kind in ("dx", "cr") else ""
    rec.text(
        ds,
        "",
        "ImageComments",
        [
            ("Compared with prior from ", None),
            (f"{st.prior_date:%m/%d/%Y}", "DATE"),
            (", no change", None),
        ],
    )
    if refs:  # references to earlier instances of the study
        name = "SourceImageSequence" if f.kind in ("sc", "us_cine") else "ReferencedImageSequence"
        ref = Dataset()
        ref.ReferencedSOPClassUID = refs[0][0]
        rec.uid(ref, f"{name}[0].", "ReferencedSOPInstanceUID", refs[0][1], "reference")
        setattr(ds, name, DicomSequence([ref]))
    canvas, dtype = _image_pixels(ds, f, st, rng, frame_of_ref, rec)
    ds.BurnedInAnnotation = "YES"
    _preserve(rec, ds, PRESERVE_IMAGE)
    if f.transfer_syntax != JPEGBaseline8Bit:
        _preserve(rec, ds, ("PhotometricInterpretation",))
    _set_pixels(ds, canvas.stored(dtype), f.transfer_syntax)
    return ds, rec, canvas.items


def generate_corpus(
    out: str | Path, *, seed: int = 0, patients: int = 3, studies_per_patient: int = 1
) -> str:
    """Write a synthetic corpus with its answer key; return a one-line summary.

    Parameters
    ----------
    out
        Output directory (created). DICOM files go to ``out/dicom/``; the key to
        ``out/answer_key.json`` and ``out/answer_key_masks.npz``.
    seed
        The same seed gives byte-identical files.
    patients, studies_per_patient
        Corpus size. Study templates rotate ``ct``, ``mr``, ``us`` over all
        studies, so three studies cover every file kind.
    """
    if patients < 1 or studies_per_patient < 1:
        from .errors import ConfigurationError

        raise ConfigurationError("--patients and --studies-per-patient must be at least 1")
    check_fonts()
    logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one INFO line per encoded tile
    root = Path(out)
    dicom_root = root / DICOM_DIR
    dicom_root.mkdir(parents=True, exist_ok=True)
    studies = _make_people(seed, patients, studies_per_patient)
    files: list[FileKey] = []
    masks: dict[str, np.ndarray] = {}
    for st in studies:
        plan = _plan(st, seed)
        frame_of_ref = generate_uid(UID_ROOT, [str(seed), st.key, "for"])
        done: list[tuple[str, str]] = []  # (SOP class, SOP instance) of images written so far
        series_refs: dict[str, list[tuple[str, str]]] = {}
        for f in plan:
            refs = done[-1:] if f.kind != "sr" else done[:3]
            ds, rec, items = _build_file(f, st, seed, refs, series_refs, frame_of_ref)
            _write(ds, dicom_root / f.rel_path)
            if f.kind != "sr":
                done.append((str(ds.SOPClassUID), f.sop_uid))
                series_refs.setdefault(f.series_uid, []).append((str(ds.SOPClassUID), f.sop_uid))
            burned: list[BurnedIn] = []
            for item in items:
                name = f"m{len(masks)}"
                masks[name] = item.mask
                burned.append(
                    BurnedIn(
                        mask=name,
                        text=item.text,
                        is_phi=item.is_phi,
                        type=item.kind,
                        frames=item.frames,
                        box=list(item.box),
                        rotation=item.rotation,
                        font=item.font,
                        size=item.size,
                    )
                )
            files.append(
                FileKey(
                    path=f.rel_path,
                    kind=f.kind,
                    modality=MODALITY[f.kind],
                    transfer_syntax=str(f.transfer_syntax),
                    patient=st.patient.key,
                    study=st.key,
                    frames=int(ds.get("NumberOfFrames", 1)) if "PixelData" in ds else 0,
                    rows=int(ds.get("Rows", 0)),
                    columns=int(ds.get("Columns", 0)),
                    samples_per_pixel=int(ds.get("SamplesPerPixel", 0)),
                    header_phi=rec.header_phi,
                    free_text=rec.free_text,
                    preserve=rec.preserve,
                    uids=rec.uids,
                    dates=rec.dates,
                    burned_in=burned,
                )
            )
    key = {
        "schema": SCHEMA,
        "generator": {
            "seed": seed,
            "patients": patients,
            "studies_per_patient": studies_per_patient,
            "version": __version__,
        },
        "dicom_dir": DICOM_DIR,
        "masks": MASKS_NAME,
        "files": files,
    }
    (root / KEY_NAME).write_text(json.dumps(key, indent=1, sort_keys=False) + "\n", "utf-8")
    save_masks(root / MASKS_NAME, masks)
    kinds = Counter(f["kind"] for f in files)
    kind_text = ", ".join(f"{k} {n}" for k, n in kinds.items())
    return (
        f"{len(files)} files ({kind_text}) for {patients} patients, {len(studies)} studies, "
        f"seed {seed} -> {dicom_root}; answer key {root / KEY_NAME}"
    )


def generate_cine(
    out: str | Path, *, frames: int, seed: int = 0, transfer_syntax: str = RLELossless
) -> Path:
    """Write one ultrasound cine of ``frames`` frames (for cost-versus-frames benchmarks).

    The same banner (name, ID, institution, date) is burned into every frame, plus
    a per-frame counter. No answer key is written.

    Examples
    --------
    >>> import tempfile
    >>> path = generate_cine(tempfile.mkdtemp() + "/cine.dcm", frames=3)
    >>> int(pydicom.dcmread(path).NumberOfFrames)
    3
    """
    check_fonts()
    logging.getLogger("openjpeg").setLevel(logging.WARNING)
    study = _make_people(seed, 1, 1)[0]
    plan = _File(
        kind="us_cine",
        series=1,
        instance=1,
        transfer_syntax=transfer_syntax,
        rel_path=f"cine_{frames}.dcm",
        sop_uid=generate_uid(UID_ROOT, [str(seed), "cine", str(frames)]),
        series_uid=generate_uid(UID_ROOT, [str(seed), "cine-series", str(frames)]),
        frames=frames,
    )
    frame_of_ref = generate_uid(UID_ROOT, [str(seed), "cine-for"])
    ds, _, _ = _build_file(plan, study, seed, [], {}, frame_of_ref)
    path = Path(out)
    _write(ds, path)
    return path
