"""Check a de-identified dataset for identifying values of the original that survived.

The deny-list is the original record's identifiers: every person name (PN) at
any depth, split into its parts too; patient IDs, birth date, accession number,
institution name and address, telephone numbers; plus whatever the text
detector's :meth:`RecordIdentifiers.deny_values` adds (other formats of the
birth date, other IDs). The whole output is searched: every element at any
depth, private tags and file meta (values dicomscrub writes itself, such as
pseudonyms, markers and the DeidentificationMethod, are blanked first). A
value matches as a whole word, case-insensitively (not inside a longer run of
letters or digits). Values shorter than three characters (initials) are not
searched: they would match everywhere. Coded (CS) values are compared with
whole identifying values only, not with name parts: a name part equal to a
defined term (``PRIMARY``, ``TEXT``) is a coincidence, not a leak.

The output is scanned from its raw bytes where the character set allows
(ASCII, Latin-1, UTF-8 and other single-byte sets): nothing is decoded that
is not searched, which keeps the check cheap enough to run on every file.

Only locations are returned, never values.

Examples
--------
>>> from pydicom.dataset import Dataset
>>> before = Dataset(); before.PatientName = "DOE^JANE"; before.PatientID = "12345"
>>> after = Dataset(); after.PatientName = "PATIENT^ABC"
>>> after.StudyDescription = "CT for Jane"
>>> find_residual_phi(before, after)
['StudyDescription']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from .read import dataset_codec, decode_values, element_vr, keyword_of, raw_items, raw_value

#: Attributes whose values identify the record (besides every PN, at any depth).
IDENTIFYING_KEYWORDS = (
    "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
    "InstitutionAddress", "OtherPatientIDs", "IssuerOfPatientID", "PatientAddress",
    "PatientTelephoneNumbers", "MedicalRecordLocator", "StudyID",
)  # fmt: skip
_IDENTIFYING = frozenset(IDENTIFYING_KEYWORDS)
#: VRs whose values can hold an identifier (what :func:`identifier_view` keeps).
IDENTIFIER_VRS = frozenset({"AE", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
#: VRs searched in the output (UIDs are checked separately, numbers not at all).
SEARCHED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)
BINARY_SEARCHED = frozenset({"OB", "UN"})
#: Pixel and waveform samples are not text.
SKIPPED_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010})
#: Written by dicomscrub from constants and the policy name.
OWN_TAGS = frozenset({0x00120063, 0x00120064})
MAX_BINARY_SCAN = 1 << 20
MIN_LENGTH = 3

#: The dummy values the header step writes into dates, times and ages (the header's
#: ``DUMMY_VALUES``). They are constants, not taken from any record, so they are no leak
#: even when a record holds the same placeholder (a birth date of 19000101).
DUMMY_VALUES = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000Y"}
_DUMMIES = frozenset(DUMMY_VALUES.values())

#: Values dicomscrub itself writes (pseudonyms, dummy tokens, default markers); they are
#: blanked before searching, so a name part like PATIENT does not match PATIENT^XXXXXXXXXX.
GENERATED = re.compile(
    r"(?:PATIENT|PERSON)\^[A-Z2-7]{10}|(?:PID|ACC|SID|IDN)-[A-Z2-7]{12}|ANON[A-Z2-7]{4,28}"
    r"|\[[A-Z_]+\]"
)


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _detector_keywords() -> frozenset[str]:
    """Keywords the text detector's RecordIdentifiers reads (besides every PN)."""
    try:
        from . import text_detect as td
    except ImportError:
        return frozenset()
    names = (
        "ID_KEYWORDS", "DATE_KEYWORDS", "EVENT_DATE_KEYWORDS", "ORG_KEYWORDS",
        "LOCATION_KEYWORDS", "PHONE_KEYWORDS", "DEVICE_KEYWORDS",
    )  # fmt: skip
    found: set[str] = set()
    for name in names:
        found.update(getattr(td, name, ()))
    return frozenset(found)


_VIEW_KEYWORDS: frozenset[str] | None = None


def identifier_view(ds: Dataset, codec: str | None = "latin_1") -> Dataset:
    """A small dataset holding only the elements of ``ds`` that identify the record.

    Every person name (PN) and every attribute in :data:`IDENTIFYING_KEYWORDS` or
    read by the text detector's ``RecordIdentifiers`` (IDs, birth date,
    institution, addresses, phones), at any depth, with sequences rebuilt around
    them. Values are decoded from the raw bytes: ``ds`` itself is not decoded, so
    kept elements are written back byte for byte. Undecodable values are skipped
    (the header step reports them).

    >>> ds = Dataset(); ds.PatientName = "DOE^JANE"; ds.Rows = 512; ds.StudyDescription = "CT"
    >>> [e.keyword for e in identifier_view(ds)]
    ['PatientName']
    """
    global _VIEW_KEYWORDS
    if _VIEW_KEYWORDS is None:
        _VIEW_KEYWORDS = _IDENTIFYING | _detector_keywords()
    wanted = _VIEW_KEYWORDS
    codec = dataset_codec(ds, codec)
    view = Dataset()
    for key, raw in raw_items(ds):
        tag = int(key)
        vr = element_vr(tag, raw.VR if raw is not None else None)
        try:
            if vr == "SQ":
                items = [identifier_view(item, codec) for item in ds[tag].value or ()]
                if any(len(item) for item in items):
                    view.add(DataElement(tag, "SQ", Sequence(items)))
            elif vr == "PN" or (vr in IDENTIFIER_VRS and keyword_of(tag) in wanted):
                values = decode_values(ds, tag, vr, raw, codec)
                if values:
                    view.add(DataElement(tag, vr, values if len(values) > 1 else values[0]))
        except Exception:
            continue
    return view


#: (keyword, VR, values) of one identifying element (see :func:`identifying_elements`).
Identifying = tuple[str, str, tuple[str, ...]]


def wanted_tags() -> frozenset[int]:
    """Tags of :data:`IDENTIFYING_KEYWORDS` and the text detector's keywords."""
    global _VIEW_KEYWORDS, _WANTED_TAGS
    if _WANTED_TAGS is None:
        if _VIEW_KEYWORDS is None:
            _VIEW_KEYWORDS = _IDENTIFYING | _detector_keywords()
        tags = (tag_for_keyword(k) for k in _VIEW_KEYWORDS)
        _WANTED_TAGS = frozenset(t for t in tags if t is not None)
    return _WANTED_TAGS


_WANTED_TAGS: frozenset[int] | None = None


def identifying_elements(ds: Dataset, codec: str | None = "latin_1") -> tuple[Identifying, ...]:
    """``(keyword, VR, values)`` of the elements :func:`identifier_view` keeps, in walk order.

    The same elements as the view (every PN, the identifying and detector keywords,
    at any depth) without building a dataset: one pass, values decoded from the
    raw bytes. The result is hashable, so it can key a cache of everything derived
    from a record's identifiers (files of a series share them).

    >>> ds = Dataset(); ds.PatientName = "DOE^JANE"; ds.Rows = 512; ds.PatientID = "12345"
    >>> identifying_elements(ds)
    (('PatientName', 'PN', ('DOE^JANE',)), ('PatientID', 'LO', ('12345',)))
    """
    found: list[Identifying] = []
    _collect(ds, dataset_codec(ds, codec), wanted_tags(), found)
    return tuple(found)


def _collect(
    ds: Dataset, codec: str | None, wanted: frozenset[int], out: list[Identifying]
) -> None:
    for key, raw in raw_items(ds):
        tag = int(key)
        vr = element_vr(tag, raw.VR if raw is not None else None)
        try:
            if vr == "SQ":
                for item in ds[tag].value or ():
                    _collect(item, dataset_codec(item, codec), wanted, out)
            elif vr == "PN" or (tag in wanted and vr in IDENTIFIER_VRS):
                values = decode_values(ds, tag, vr, raw, codec)
                if values:
                    out.append((keyword_of(tag), vr, tuple(values)))
        except Exception:
            continue  # undecodable: the header step reports it


def _walk(ds: Dataset) -> Iterable[DataElement]:
    for element in ds:
        if element.VR == "SQ":
            for item in element.value or ():
                yield from _walk(item)
        else:
            yield element


def _type_of(keyword: str, vr: str) -> str:
    if vr == "PN":
        return "PERSON"
    if vr in ("DA", "DT"):
        return "DATE"
    if keyword == "InstitutionName":
        return "ORG"
    if keyword in ("InstitutionAddress", "PatientAddress"):
        return "LOCATION"
    if keyword == "PatientTelephoneNumbers":
        return "PHONE"
    return "ID"


def _triples(ds: Dataset) -> Iterator[Identifying]:
    for element in _walk(ds):
        if element.VR == "PN" or element.keyword in _IDENTIFYING:
            yield element.keyword, element.VR, tuple(_strings(element.value))


def _typed(elements: Iterable[Identifying]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, vr, texts in elements:
        if vr != "PN" and keyword not in _IDENTIFYING:
            continue
        kind = _type_of(keyword, vr)
        for text in texts:
            if vr == "PN":
                parts = [p for p in _NAME_SPLIT.split(text) if p]
                values = [*parts, " ".join(parts)] if parts else []
            else:
                values = [text]
            for value in values:
                normalized = " ".join(value.upper().split())
                if normalized:
                    found.setdefault(normalized, kind)
    return found


def _full(elements: Iterable[Identifying]) -> list[str]:
    found: set[str] = set()
    for keyword, vr, texts in elements:
        if vr != "PN" and keyword not in _IDENTIFYING:
            continue
        for text in texts:
            words = _NAME_SPLIT.split(text) if vr == "PN" else text.split()
            joined = " ".join(w for w in words if w).upper()
            if len(joined) >= MIN_LENGTH:
                found.add(joined)
    return sorted(found)


_NAME_SPLIT = re.compile(r"[\^=\s,]+")


def typed_identifying_values(ds: Dataset) -> dict[str, str]:
    """Identifying values of ``ds`` (upper-cased, name parts included) -> entity type.

    >>> ds = Dataset(); ds.PatientName = "DOE^JANE"; ds.PatientID = "12345"
    >>> values = typed_identifying_values(ds)
    >>> values["JANE"], values["DOE JANE"], values["12345"]
    ('PERSON', 'PERSON', 'ID')
    """
    return _typed(_triples(ds))


def identifying_values(ds: Dataset) -> list[str]:
    """The identifying values of ``ds`` (any depth), person names also split into parts.

    >>> ds = Dataset(); ds.PatientName = "DOE^JANE^Q"; ds.PatientID = "12345"
    >>> identifying_values(ds)
    ['12345', 'DOE', 'DOE JANE Q', 'JANE', 'Q']
    """
    return sorted(typed_identifying_values(ds))


def full_values(ds: Dataset) -> list[str]:
    """Whole identifying values (full names, IDs), without the name parts."""
    return _full(_triples(ds))


def deny_values(ds: Dataset, extra: Iterable[str] = ()) -> list[str]:
    """The searched deny-list: :func:`identifying_values` plus ``extra``, normalised."""
    values = {" ".join(v.upper().split()) for v in (*identifying_values(ds), *extra)}
    return sorted(v for v in values if len(v) >= MIN_LENGTH)


_WORD = re.compile(r"[^\W_]+")
_SPACE = re.compile(r"\s+")
_ODD_SPACE = re.compile(r"[^\S ]|  ")  # whitespace other than single spaces


class PhraseMatcher:
    """Find whole-word, case-insensitive occurrences of many phrases in a text.

    A phrase matches where it is not inside a longer run of letters or digits; any
    run of whitespace in the text matches a space of the phrase. At each position
    the longest phrase wins; matches do not overlap. Phrases are indexed by their
    first word, so building one costs little (a compiled regular expression of a
    few hundred alternatives takes tens of milliseconds per record).

    >>> m = PhraseMatcher(["DOE", "JANE DOE", "03/06/1985"])
    >>> list(m.finditer("for Jane   Doe, born 03/06/1985; DOES"))
    [(4, 14), (21, 31)]
    >>> m.search("jane doesnt"), m.search("x DOE")
    (False, True)
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self._by_word: dict[str, list[tuple[str, int]]] = {}
        for entry in {_indexed(p) for p in phrases}:
            if entry is not None:
                self._by_word.setdefault(entry[0], []).append(entry[1:])
        for candidates in self._by_word.values():
            candidates.sort(key=lambda c: len(c[0]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._by_word)

    def finditer(self, text: str) -> Iterable[tuple[int, int]]:
        """``(start, end)`` of each match in ``text``."""
        upper = text.upper()
        if len(upper) != len(text):  # a case mapping changed the length: compare as is
            upper = text
        by_word = self._by_word
        starts = by_word.keys() & set(_WORD.findall(upper))
        if not starts:
            return  # no word of the text starts a phrase (the common case: one C-level pass)
        # whitespace runs as one space; a text with single spaces only is its own normal form
        odd = _ODD_SPACE.search(upper) is not None
        norm = _SPACE.sub(" ", upper) if odd else upper
        origin: list[int] | None = None
        # the words that start a phrase, in the order they occur (whole words only)
        found = sorted(
            (word.start(), word.group(0))
            for first in starts
            for word in _whole_word(first).finditer(norm)
        )
        done = 0
        for position, first in found:
            if position < done:
                continue
            for phrase, offset in by_word[first]:
                start = position - offset
                end = start + len(phrase)
                if start < done or not norm.startswith(phrase, start):
                    continue
                if (start > 0 and _alnum(norm[start - 1]) and _alnum(phrase[0])) or (
                    end < len(norm) and _alnum(norm[end]) and _alnum(phrase[-1])
                ):
                    continue
                done = end
                if not odd:
                    yield start, end
                    break
                if origin is None:
                    origin = _origins(upper)
                yield origin[start], origin[end - 1] + 1
                break

    def search(self, text: str) -> bool:
        """True when any phrase occurs in ``text``."""
        return next(iter(self.finditer(text)), None) is not None


def _origins(text: str) -> list[int]:
    """Where each character of ``text`` with its whitespace runs collapsed came from
    (and, last, the length of ``text``)."""
    origin: list[int] = []
    cursor = 0
    for space in _SPACE.finditer(text):
        origin.extend(range(cursor, space.start() + 1))
        cursor = space.end()
    origin.extend(range(cursor, len(text) + 1))
    return origin


@lru_cache(maxsize=4096)
def _whole_word(word: str) -> re.Pattern[str]:
    """``word`` where it is a whole word of :data:`_WORD` (not inside a longer one)."""
    return re.compile(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])")


@lru_cache(maxsize=16384)
def _normalised(value: str) -> str:
    """Upper case, whitespace runs as one space, no space at the ends (remembered)."""
    return " ".join(value.upper().split())


@lru_cache(maxsize=16384)
def _indexed(phrase: str) -> tuple[str, str, int] | None:
    """``(first word, normalised phrase, offset of the first word)``, or None without a word.

    Remembered: the records of one patient (its series) share most of their phrases.
    """
    normalised = _normalised(phrase)
    first = _WORD.search(normalised)
    return None if first is None else (first.group(0), normalised, first.start())


def _alnum(char: str) -> bool:
    return char.isalnum()


def compile_deny(values: Iterable[str]) -> PhraseMatcher | None:
    """A matcher for the values of at least three characters (None when there is none).

    >>> bool(compile_deny(["DOE"]).search("for doe,")), bool(compile_deny(["DOE"]).search("DOES"))
    (True, False)
    """
    matcher = PhraseMatcher(v for v in values if len(v.strip()) >= MIN_LENGTH)
    return matcher if matcher else None


@dataclass(frozen=True)
class DenyList:
    """The compiled deny-list of one original record.

    ``parts`` matches any identifying value or name part (searched in text);
    ``whole`` matches whole values only (searched in coded CS values).
    ``types`` maps a normalised value to its entity type.
    """

    parts: PhraseMatcher | None
    whole: PhraseMatcher | None
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, ds: Dataset, extra: Iterable[str] = ()) -> DenyList:
        """Build the deny-list of ``ds`` plus ``extra`` values (e.g. the text detector's).

        ``ds`` may be the full dataset or its :func:`identifier_view`.
        """
        return cls.from_elements(tuple(_triples(ds)), extra)

    @classmethod
    def from_elements(cls, elements: Iterable[Identifying], extra: Iterable[str] = ()) -> DenyList:
        """Build the deny-list from :func:`identifying_elements` plus ``extra`` values."""
        elements = tuple(elements)
        typed = _typed(elements)
        values = {_normalised(v) for v in (*typed, *extra)} - _DUMMIES
        whole = set(_full(elements)) - _DUMMIES
        return cls(compile_deny(values), compile_deny(whole), typed)

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, entity type)`` of every deny-list match in ``text``."""
        if self.parts is None:
            return []
        blanked = GENERATED.sub(lambda m: " " * len(m.group(0)), text)
        return [
            (start, end, self.types.get(" ".join(text[start:end].upper().split()), "OTHER"))
            for start, end in self.parts.finditer(blanked)
        ]

    def find(self, output: Dataset, original_uids: Iterable[str] = ()) -> list[str]:
        """Locations in ``output`` (file meta included) where a value or original UID survives."""
        scan = _Scan(self, frozenset(u for u in original_uids if u))
        meta = getattr(output, "file_meta", None)
        if meta is not None:
            scan.dataset(meta, "FileMeta", "latin_1")
        scan.dataset(output, "", "latin_1")
        return scan.hits


class _Scan:
    def __init__(self, deny: DenyList, uids: frozenset[str]) -> None:
        self.deny = deny
        self.uids = uids
        self.hits: list[str] = []

    def dataset(self, ds: Dataset, path: str, codec: str | None) -> None:
        codec = dataset_codec(ds, codec)
        for key, raw in raw_items(ds):
            tag = int(key)
            if tag in SKIPPED_TAGS or tag in OWN_TAGS:
                continue
            vr = element_vr(tag, raw.VR if raw is not None else None)
            if vr == "SQ":
                where = location(path, tag)
                for index, item in enumerate(ds[tag].value or ()):
                    self.dataset(item, f"{where}[{index}]", codec)
            elif vr in SEARCHED_VRS:
                pattern = self.deny.whole if vr == "CS" else self.deny.parts
                if pattern is None:
                    continue
                text = self._text(ds, tag, raw, codec)
                if text and pattern.search(GENERATED.sub(" ", text)):
                    self.hits.append(location(path, tag))
            elif vr == "UI" and self.uids:
                values = self._text(ds, tag, raw, "ascii").split("\\")
                if {v.strip("\x00 ") for v in values} & self.uids:
                    self.hits.append(location(path, tag))
            elif vr in BINARY_SEARCHED and self.deny.parts is not None:
                if (tag & 0xFF00FFFF) == 0x60003000:
                    continue
                value = raw_value(ds, raw)
                if not isinstance(value, bytes):
                    continue
                if self.deny.parts.search(value[:MAX_BINARY_SCAN].decode("latin-1")):
                    self.hits.append(location(path, tag))

    @staticmethod
    def _text(ds: Dataset, tag: int, raw: object, codec: str | None) -> str:
        value = getattr(raw, "value", None)
        if isinstance(value, bytes) and codec is not None:
            return value.decode(codec, "replace")
        try:
            return "\\".join(_strings(ds[tag].value))
        except Exception:
            return value.decode("latin-1") if isinstance(value, bytes) else ""


def location(path: str, tag: int) -> str:
    """``path.Keyword`` (or ``path.(gggg,eeee)``) of the element ``tag`` below ``path``."""
    name = keyword_of(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return f"{path}.{name}" if path else name


def find_residual_values(pattern: PhraseMatcher | None, output: Dataset) -> list[str]:
    """Locations in ``output`` (file meta included) where ``pattern`` matches text."""
    return DenyList(pattern, pattern).find(output)


def find_residual_uids(original_uids: Iterable[str], output: Dataset) -> list[str]:
    """Locations where one of ``original_uids`` (the input's instance UIDs) survives."""
    return DenyList(None, None).find(output, original_uids)


def find_residual_phi(original: Dataset, output: Dataset) -> list[str]:
    """Locations (keywords with sequence paths, or tags) where an original identifier survives.

    Parameters
    ----------
    original
        The input dataset, before de-identification.
    output
        The de-identified dataset (re-read from the written bytes).
    """
    view = identifier_view(original)
    extra: list[str] = []
    try:
        from .text_detect import RecordIdentifiers

        extra = list(RecordIdentifiers.from_dataset(view).deny_values())
    except ImportError:
        pass
    return DenyList.from_dataset(view, extra).find(output)
