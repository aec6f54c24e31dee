"""Check a de-identified dataset for identifying values of the original that survived.

The deny-list is the original record's identifiers: the parts of every person
name in it (patient, physicians, operators...), patient IDs, birth date,
accession number and institution name and address, plus whatever the text
detector's :meth:`RecordIdentifiers.deny_values` adds (other formats of the
birth date, other IDs). The whole output is searched: every element at any
depth, private tags and file meta. A value matches as a whole word
(case-insensitive; not inside a longer run of letters or digits). Values
shorter than three characters (initials) are not searched: they would match
everywhere.

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
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

#: Attributes whose values identify the record (searched at any depth of the original).
IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName",
    "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "OperatorsName", "RequestingPhysician",
    "OtherPatientIDs", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "ScheduledPerformingPhysicianName", "ConsultingPhysicianName", "VerifyingObserverName",
    "PersonName", "ContentCreatorName", "ReviewerName", "IssuerOfPatientID",
    "PatientAddress", "PatientTelephoneNumbers", "MedicalRecordLocator",
)  # fmt: skip
_IDENTIFYING = frozenset(IDENTIFYING_KEYWORDS)
#: VRs searched in the output (UIDs and numbers are checked separately or not at all).
SEARCHED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)
BINARY_SEARCHED = frozenset({"OB", "UN"})
SKIPPED_BINARY_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x54001010})
#: Written by dicomscrub from constants and the policy name: not searched.
SKIPPED_TAGS = frozenset({0x00120063, 0x00120064})
MAX_BINARY_SCAN = 1 << 20
MIN_LENGTH = 3


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _type_of(keyword: str, vr: str) -> str:
    if vr == "PN":
        return "PERSON"
    if vr in ("DA", "DT"):
        return "DATE"
    if keyword.startswith("Institution"):
        return "ORG" if keyword == "InstitutionName" else "LOCATION"
    if keyword == "PatientAddress":
        return "LOCATION"
    if keyword == "PatientTelephoneNumbers":
        return "PHONE"
    return "ID"


def typed_identifying_values(ds: Dataset) -> dict[str, str]:
    """Identifying values of ``ds`` (upper-cased, name parts included) -> entity type.

    >>> ds = Dataset(); ds.PatientName = "DOE^JANE"; ds.PatientID = "12345"
    >>> typed_identifying_values(ds)["JANE"], typed_identifying_values(ds)["12345"]
    ('PERSON', 'ID')
    """
    found: dict[str, str] = {}
    for element in _walk(ds, meta=False):
        if element.keyword not in _IDENTIFYING:
            continue
        kind = _type_of(element.keyword, element.VR)
        for text in _strings(element.value):
            if element.VR == "PN":
                parts = [p for p in re.split(r"[\^=\s,]+", text) if p]
                values = [*parts, " ".join(parts)] if parts else []
            else:
                values = [text]
            for value in values:
                normalized = " ".join(value.upper().split())
                if normalized:
                    found.setdefault(normalized, kind)
    return found


def identifying_values(ds: Dataset) -> list[str]:
    """The identifying values of ``ds`` (any depth), person names split into their parts.

    >>> ds = Dataset(); ds.PatientName = "DOE^JANE^Q"; ds.PatientID = "12345"
    >>> sorted(identifying_values(ds))
    ['12345', 'DOE', 'DOE JANE Q', 'JANE', 'Q']
    """
    found: set[str] = set()
    for element in _walk(ds, meta=False):
        if element.keyword not in _IDENTIFYING:
            continue
        for text in _strings(element.value):
            if element.VR == "PN":
                parts = [p for p in re.split(r"[\^=\s,]+", text) if p]
                found.update(parts)
                if parts:
                    found.add(" ".join(parts))
            elif text.strip():
                found.add(text.strip())
    return sorted(found)


def deny_values(ds: Dataset, extra: Iterable[str] = ()) -> list[str]:
    """The searched deny-list: :func:`identifying_values` plus ``extra``, normalised."""
    values = {" ".join(v.upper().split()) for v in (*identifying_values(ds), *extra)}
    return sorted(v for v in values if len(v) >= MIN_LENGTH)


def full_values(ds: Dataset) -> list[str]:
    """Whole identifying values (full names, IDs), without the name parts."""
    found: set[str] = set()
    for element in _walk(ds, meta=False):
        if element.keyword in _IDENTIFYING:
            for text in _strings(element.value):
                words = re.split(r"[\^=\s,]+", text) if element.VR == "PN" else text.split()
                joined = " ".join(w for w in words if w).upper()
                if len(joined) >= MIN_LENGTH:
                    found.add(joined)
    return sorted(found)


def compile_deny(values: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive whole-word pattern for the deny-list (None when empty)."""
    items = sorted({v for v in values if len(v) >= MIN_LENGTH}, key=len, reverse=True)
    if not items:
        return None
    alternatives = "|".join(r"\s+".join(map(re.escape, v.split())) for v in items)
    return re.compile(rf"(?<![A-Z0-9])(?:{alternatives})(?![A-Z0-9])", re.IGNORECASE)


#: Values dicomscrub itself writes (pseudonyms, dummy tokens, default markers); they are
#: blanked before searching, so a name part like PATIENT does not match PATIENT^XXXXXXXXXX.
GENERATED = re.compile(
    r"(?:PATIENT|PERSON)\^[A-Z2-7]{10}|(?:PID|ACC|SID|IDN)-[A-Z2-7]{12}|ANON[A-Z2-7]{4,28}"
    r"|\[[A-Z_]+\]"
)


@dataclass(frozen=True)
class DenyList:
    """The compiled deny-list of one original record.

    ``parts`` matches any identifying value or name part (searched in free text);
    ``whole`` matches only whole values (searched in coded CS values, where a name
    part equal to a defined term such as ``PRIMARY`` or ``TEXT`` is a coincidence).
    """

    parts: re.Pattern[str] | None
    whole: re.Pattern[str] | None
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, ds: Dataset, extra: Iterable[str] = ()) -> DenyList:
        """Build the deny-list of ``ds`` plus ``extra`` values (e.g. the text detector's)."""
        return cls(
            compile_deny(deny_values(ds, extra)),
            compile_deny(full_values(ds)),
            typed_identifying_values(ds),
        )

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, entity type)`` of every deny-list match in ``text``."""
        if self.parts is None:
            return []
        blanked = GENERATED.sub(lambda m: " " * len(m.group(0)), text)
        return [
            (m.start(), m.end(), self.types.get(" ".join(m.group(0).upper().split()), "OTHER"))
            for m in self.parts.finditer(blanked)
        ]

    def find(self, output: Dataset) -> list[str]:
        """Locations in ``output`` (file meta included) where a value matches."""
        return find_residual_values(self.parts, output, whole=self.whole)


def _walk(ds: Dataset, *, meta: bool, path: str = "") -> Iterable:  # type: ignore[type-arg]
    if meta and getattr(ds, "file_meta", None) is not None:
        yield from ds.file_meta
    for element in ds:
        yield element
        if element.VR == "SQ":
            for item in element.value or ():
                yield from _walk(item, meta=False)


def _locations(ds: Dataset, path: str = "") -> Iterable[tuple[str, object, str, object]]:
    for element in ds:
        name = element.keyword or f"({element.tag.group:04X},{element.tag.element:04X})"
        where = f"{path}.{name}" if path else name
        if element.VR == "SQ":
            for index, item in enumerate(element.value or ()):
                yield from _locations(item, f"{where}[{index}]")
        else:
            yield where, element.VR, name, element


def find_residual_values(
    pattern: re.Pattern[str] | None,
    output: Dataset,
    *,
    whole: re.Pattern[str] | None = None,
) -> list[str]:
    """Locations in ``output`` (file meta included) where ``pattern`` matches.

    CS values are searched with ``whole`` (whole values only) when it is given.
    """
    if pattern is None:
        return []
    hits: list[str] = []
    meta = getattr(output, "file_meta", None)
    sources: list[tuple[str, Dataset]] = [("", output)]
    if meta is not None:
        sources.insert(0, ("FileMeta", meta))
    for prefix, dataset in sources:
        for where, vr, _name, element in _locations(dataset, prefix):
            chosen = whole if (vr == "CS" and whole is not None) else pattern
            if chosen is not None and _matches(chosen, vr, element):
                hits.append(where)
    return hits


def _matches(pattern: re.Pattern[str], vr: object, element: object) -> bool:
    value = getattr(element, "value", None)
    tag = int(getattr(element, "tag", 0))
    if tag in SKIPPED_TAGS:
        return False
    if vr in SEARCHED_VRS:
        return any(pattern.search(GENERATED.sub(" ", text)) for text in _strings(value))
    if vr in BINARY_SEARCHED and isinstance(value, bytes) and tag not in SKIPPED_BINARY_TAGS:
        if (tag & 0xFF00FFFF) == 0x60003000:
            return False
        return bool(pattern.search(value[:MAX_BINARY_SCAN].decode("latin-1")))
    return False


def find_residual_uids(original_uids: Iterable[str], output: Dataset) -> list[str]:
    """Locations where one of ``original_uids`` (instance UIDs of the input) survives."""
    wanted = {u for u in original_uids if u}
    if not wanted:
        return []
    hits = []
    meta = getattr(output, "file_meta", None)
    sources: list[tuple[str, Dataset]] = [("", output)]
    if meta is not None:
        sources.insert(0, ("FileMeta", meta))
    for prefix, dataset in sources:
        for where, vr, _name, element in _locations(dataset, prefix):
            if vr == "UI" and any(v in wanted for v in _strings(element.value)):  # type: ignore[attr-defined]
                hits.append(where)
    return hits


def find_residual_phi(original: Dataset, output: Dataset) -> list[str]:
    """Locations (keywords with sequence paths, or tags) where an original identifier survives.

    Parameters
    ----------
    original
        The input dataset, before de-identification.
    output
        The de-identified dataset (re-read from the written bytes).
    """
    extra: list[str] = []
    try:
        from .text_detect import RecordIdentifiers

        extra = list(RecordIdentifiers.from_dataset(original).deny_values())
    except ImportError:
        pass
    return DenyList.from_dataset(original, extra).find(output)
