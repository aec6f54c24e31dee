"""Pattern layer of the text detector: regular expressions, word lists and name heuristics.

Everything here is independent of the record being processed: it finds
dates, times, phone numbers, e-mail addresses, URLs, social security
numbers, ID-like digit runs, ages over 89, street addresses, institution
names and person names (DICOM caret names, titles, known first names) in any
string. :mod:`dicomscrub.core.text_detect` combines it with the record's own
identifiers and spaCy NER.

The word lists are loaded once per process:

- ``core/data/never_phi_terms.txt``: radiology, anatomy, modality, view,
  device, protocol and unit words that are never PHI on their own;
- spaCy's English stop words;
- first and last names from Faker's locale data (a name gazetteer for
  ALL-CAPS text, which defeats NER);
- Faker's list of about 1000 common English words;
- an English dictionary (the GCIDE list of the ``english-words`` package,
  about 114 000 words) to tell dictionary words from names.

Examples
--------
>>> [(text[s.start:s.end], s.entity_type) for text in ["DOB: 07/22/1943"]
...  for s in find_patterns(text)]
[('07/22/1943', 'DATE')]
>>> find_patterns("CHEST PA LAT")
[]
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = [
    "DEVICE_KEYWORDS",
    "ENTITY_TYPES",
    "WORD_RE",
    "Span",
    "Vocabulary",
    "find_patterns",
    "fold",
    "ocr_digit_view",
    "vocabulary",
]

#: Entity types the detector reports (see ``docs/text-detection.md``).
ENTITY_TYPES = (
    "PERSON",
    "ID",
    "DATE",
    "TIME",
    "AGE",
    "ORG",
    "LOCATION",
    "PHONE",
    "EMAIL",
    "URL",
    "SSN",
    "OTHER",
)


#: Keywords naming the equipment and software, not people: their words are no name for NER
#: anywhere in the record, and their own values are checked without the name heuristics.
DEVICE_KEYWORDS = frozenset(
    {
        "Manufacturer",
        "ManufacturerModelName",
        "SoftwareVersions",
        "SecondaryCaptureDeviceManufacturer",
        "SecondaryCaptureDeviceManufacturerModelName",
        "SecondaryCaptureDeviceSoftwareVersions",
        "HardcopyDeviceManufacturer",
        "HardcopyDeviceManufacturerModelName",
        "HardcopyDeviceSoftwareVersion",
        "DetectorManufacturerName",
        "DetectorManufacturerModelName",
        "ReceiveCoilManufacturerName",
        "TransmitCoilManufacturerName",
        "ReceiveCoilName",
        "TransmitCoilName",
        "TransducerType",
        "ConvolutionKernel",
        "SequenceName",
    }
)


@dataclass(frozen=True)
class Span:
    """A PHI span in a string: ``text[start:end]`` is the PHI.

    Attributes
    ----------
    start, end
        Character offsets (``end`` exclusive).
    entity_type
        One of :data:`ENTITY_TYPES`.
    detector
        ``"denylist"`` (the record's own identifiers or ``policy.text.deny``),
        ``"pattern"`` (regular expressions and name heuristics) or ``"ner"``.
    confidence
        0..1.

    Examples
    --------
    >>> Span(0, 4, "PERSON", "ner", 0.6).end
    4
    """

    start: int
    end: int
    entity_type: str
    detector: str
    confidence: float


#: A word: letters and digits, with inner apostrophes ("O'BRIEN", "CHILDREN'S").
WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


def fold(word: str) -> str:
    """Case- and accent-fold a word for dictionary look-ups.

    >>> fold("Müller")
    'muller'
    """
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("’", "'")


# ---------------------------------------------------------------------------- word lists


@dataclass(frozen=True)
class Vocabulary:
    """The process-wide word lists (all folded).

    Attributes
    ----------
    never_phi
        Radiology, anatomy, modality, view, device, protocol and unit words.
    stop
        English stop words (spaCy's list).
    common
        Common English words (Faker's lorem list) minus known first names.
    first_names, last_names
        Name gazetteer from Faker's locale data, minus ``never_phi`` words.
    english
        English dictionary words (GCIDE), lower case.
    """

    never_phi: frozenset[str]
    stop: frozenset[str]
    common: frozenset[str]
    first_names: frozenset[str]
    last_names: frozenset[str]
    english: frozenset[str]

    def is_safe_word(self, folded: str) -> bool:
        """True when a folded word is never PHI on its own (vocabulary or stop word)."""
        return folded in self.never_phi or folded in self.stop

    def is_name(self, folded: str) -> bool:
        """True when a folded word is a known first or last name."""
        return folded in self.first_names or folded in self.last_names

    def is_english(self, folded: str) -> bool:
        """True when a folded word (or its stem without -s, -es, -ed, -ing) is in the dictionary.

        >>> vocabulary().is_english("attributes"), vocabulary().is_english("kaufman")
        (True, False)
        """
        if folded.endswith("'s"):
            folded = folded[:-2]
        if folded in self.english or folded in self.common:
            return True
        for suffix in ("s", "es", "ed", "d", "ing", "ly"):
            if folded.endswith(suffix) and len(folded) - len(suffix) >= 3:
                stem = folded[: -len(suffix)]
                if stem in self.english or (suffix == "ing" and stem + "e" in self.english):
                    return True
        return False


def _read_terms() -> Iterator[str]:
    text = resources.files("dicomscrub.core").joinpath("data/never_phi_terms.txt")
    for line in text.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        for match in WORD_RE.finditer(line):
            yield fold(match.group())


_NAME_LOCALES = ("en_US", "en_GB", "en_IE", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR")


def _faker_names(attribute: str) -> set[str]:
    import importlib

    names: set[str] = set()
    for locale in _NAME_LOCALES:
        try:
            module = importlib.import_module(f"faker.providers.person.{locale}")
        except ImportError:  # pragma: no cover - faker always ships these locales
            continue
        values = getattr(module.Provider, attribute, ())
        for name in values:
            for match in WORD_RE.finditer(str(name)):
                if len(match.group()) >= 2:
                    names.add(fold(match.group()))
    return names


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """Load the word lists once per process.

    >>> v = vocabulary()
    >>> "portable" in v.never_phi and "mary" in v.first_names
    True
    """
    from english_words import get_english_words_set  # type: ignore[import-untyped]
    from faker.providers.lorem.en_US import Provider as Lorem
    from spacy.lang.en.stop_words import STOP_WORDS

    never_phi = frozenset(_read_terms())
    stop = frozenset(fold(w) for w in STOP_WORDS)
    first = _faker_names("first_names") - never_phi
    last = _faker_names("last_names") - never_phi
    common = frozenset(fold(w) for w in Lorem.word_list) - first
    words = get_english_words_set(["gcide"], alpha=True, lower=True)
    english = frozenset(w for w in words if len(w) > 1)
    return Vocabulary(never_phi, stop, common, frozenset(first), frozenset(last), english)


# ---------------------------------------------------------------------------- regexes

#: Month abbreviations as DICOM screens print dates (``22-JUL-1943``).
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = frozenset(
    {
        "JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST", "SEPTEMBER",
        "OCTOBER", "NOVEMBER", "DECEMBER", "SEPT",
    }
)  # fmt: skip
#: Every month abbreviation with at most one character changed (``JAM``, ``4AN``).
_MONTH_HEADS = frozenset(
    m[:i] + c + m[i + 1 :]
    for m in MONTHS
    for i in range(3)
    for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)


#: The groups of a date between its separators (letters and digits; ``|`` is OCR's 1):
#: ``DATE_GROUP.findall("O1/O5/2O24")`` gives ``["O1", "O5", "2O24"]``.
DATE_GROUP = re.compile(r"(?:[^\W_]|\|)+")


def month_like(word: str, *, fuzzy: bool = True) -> bool:
    """Whether an OCR word is a month: an abbreviation (with ``fuzzy``, at most one
    character wrong) or a full name.

    >>> [month_like(w) for w in ("Jam", "4AN", "July", "SEPT", "Julyy", "ABC", "Ma")]
    [True, True, True, True, False, False, False]
    >>> month_like("mGy"), month_like("mGy", fuzzy=False), month_like("May", fuzzy=False)
    (True, False, True)
    """
    head = word[:3].upper()
    return (
        len(word) >= 3
        and (head in _MONTH_HEADS if fuzzy else head in MONTHS)
        and (len(word) == 3 or word.upper() in _MONTH_NAMES)
    )


_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MON_NUM = r"(?:0?[1-9]|1[0-2])"
_YEAR4 = r"(?:19|20)\d\d"
_I = re.IGNORECASE

# (entity type, regex, confidence, group holding the PHI)
_PATTERNS: list[tuple[str, re.Pattern[str], float, int]] = [
    # --- dates
    (  # ISO 8601 date and time: 2012-03-09T10:22:05, 2012-03-09 10:22
        "DATE",
        re.compile(
            rf"(?<![\w.]){_YEAR4}-{_MON_NUM}-{_DAY}[T ](?:[01]\d|2[0-3]):[0-5]\d"
            r"(?::[0-5]\d(?:\.\d{1,6})?)?(?:Z|[+-]\d\d:?\d\d)?(?![\w:])"
        ),
        0.9,
        0,
    ),
    (  # ISO and year-first: 2012-03-09, 2012/03/09, 2012.03.09
        "DATE",
        re.compile(rf"(?<![\w.]){_YEAR4}([-/.]){_MON_NUM}\1{_DAY}(?!\w|\.\d)"),
        0.9,
        0,
    ),
    (  # MM/DD/YYYY, DD.MM.YYYY, M/D/YY, DD-MM-YYYY ...
        "DATE",
        re.compile(rf"(?<![\w.:/-]){_DAY}([-/.]){_DAY}\1(?:{_YEAR4}|\d\d)(?!\w|[.:/-]\d)"),
        0.9,
        0,
    ),
    (  # D-MON-YYYY, DD-MON-YY, 22 JUL 1943, 22JUL1943, 3rd March 2012
        "DATE",
        re.compile(
            rf"(?<!\w){_DAY}(?:st|nd|rd|th)?[-\s.]?(?:of\s+)?{_MONTH}\.?[-\s.,]*"
            rf"(?:{_YEAR4}|'?\d\d)(?!\w)",
            _I,
        ),
        0.9,
        0,
    ),
    (  # July 22, 1943; JUL 22 1943
        "DATE",
        re.compile(rf"(?<!\w){_MONTH}\.?\s*{_DAY}(?:st|nd|rd|th)?,?\s*{_YEAR4}(?!\w)", _I),
        0.9,
        0,
    ),
    (  # month and year: March 2012, MAR-2012, 03/2012
        "DATE",
        re.compile(rf"(?<!\w){_MONTH}\.?[-\s,]+{_YEAR4}(?!\w)", _I),
        0.7,
        0,
    ),
    ("DATE", re.compile(rf"(?<![\w./-]){_MON_NUM}/{_YEAR4}(?![\w/]|\.\d)"), 0.7, 0),
    (  # YYYYMMDD and DICOM DT YYYYMMDDHHMMSS(.ffffff)
        "DATE",
        re.compile(
            rf"(?<![\w.]){_YEAR4}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
            r"(?:[0-2]\d[0-5]\d(?:[0-5]\d(?:\.\d{1,6})?)?)?(?:[+-][01]\d[0-5]\d)?(?!\w|\.\d)"
        ),
        0.9,
        0,
    ),
    # --- times of day (a leading + or - marks an elapsed time or a timer: not PHI)
    (
        "TIME",
        re.compile(
            r"(?<![\w:+\-.])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?"
            r"(?:\s?[AaPp]\.?[Mm]\.?(?!\w))?(?![\w:]|\.\d)"
        ),
        0.85,
        0,
    ),
    # --- SSN, phone numbers
    ("SSN", re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"), 0.95, 0),
    (
        "SSN",
        re.compile(r"\b(?:ssn|social\s+security(?:\s+(?:no|number))?)\.?\s*[:#]?\s*(\d{9})\b", _I),
        0.95,
        1,
    ),
    (  # 216-555-1234, 216.555.1234, (216) 555-1234, +1 216 555 1234
        "PHONE",
        re.compile(
            r"(?<![\w+.-])(?:(?:\+?1[ \t.-]?)?\(\d{3}\)[ \t]?\d{3}[ \t.-]?\d{4}"
            r"|\+?1[ \t.-]\d{3}[ \t.-]\d{3}[ \t.-]\d{4}"
            r"|\d{3}([.-])\d{3}\1\d{4})(?:[ \t]?(?:x|ext\.?)[ \t]?\d{1,5})?(?![\w-]|\.\d)"
        ),
        0.85,
        0,
    ),
    (  # international: +49 30 1234567, +44 (0)20 7946 0958
        "PHONE",
        re.compile(r"(?<![\w+])\+\d{1,3}(?:[ \t.-]?\(?\d{1,4}\)?){2,5}(?![\w:])"),
        0.8,
        0,
    ),
    (  # labelled: Tel: 0216 5551234, Phone # 555 1234
        "PHONE",
        re.compile(
            r"\b(?:tel|phone|ph|fax|cell|mobile|mob|pager|telephone)\b\.?\s*"
            r"(?:no\.?|number|#)?\s*[:#]?\s*(\+?\d[\d \t().-]{5,}\d)",
            _I,
        ),
        0.9,
        1,
    ),
    ("PHONE", re.compile(r"(?<![\w.+/-])\d{3}-\d{4}(?![\w-]|\.\d)"), 0.6, 0),
    # --- e-mail, URL
    (
        "EMAIL",
        re.compile(
            r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"
        ),
        0.99,
        0,
    ),
    ("URL", re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+", _I), 0.95, 0),
    (
        "URL",
        re.compile(
            r"(?<![\w.-])[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,8}\.(?:com|org|net|edu|gov|mil|io|info|biz|health"
            r"|de|uk|fr|nl|ca|au|ch|at|it|es|se|no|dk|be)\b(?:/[^\s]*)?",
            _I,
        ),
        0.8,
        0,
    ),
    # --- IDs: MRN / accession-like digit runs and labelled identifiers
    ("ID", re.compile(r"(?<![\w.])\d{7,}(?:[A-Za-z]{1,2})?(?!\w|\.\d)"), 0.8, 0),
    ("ID", re.compile(r"(?<![\w.])[A-Za-z]{1,5}[-_#:]?\d{5,}[A-Za-z]?(?!\w|\.\d)"), 0.75, 0),
    (  # letters and digits mixed, 6+ digits: 20130912E801911, E40404040404
        "ID",
        re.compile(r"(?<![\w.])(?=(?:[A-Za-z]*\d){6})(?=\d*[A-Za-z])[A-Za-z0-9]{7,}(?!\w|\.\d)"),
        0.75,
        0,
    ),
    (  # segmented: 11-05-25-142825, 123_4567_89 (7+ digits in all)
        "ID",
        re.compile(r"(?<![\w.-])\d+(?:[-_]\d+){1,5}(?!\w|[-_.]\d)"),
        0.7,
        0,
    ),
    (
        "ID",
        re.compile(
            r"(?<![\w-])(?:mrn|mr\s?#|mr\s?no|med(?:ical)?\s?rec(?:ord)?|patient\s?id|pat\.?\s?id|pid|id"
            r"|acc(?:ession)?|acct|account|chart|case|encounter|enc|visit|fin|csn|har"
            r"|hosp(?:ital)?\s?(?:no|number|#)|ur\s?no|nhs|study\s?id|order)"
            r"\.?\s*(?:no\.?|num(?:ber)?\.?|#)?\s*[:#=]?\s*"
            r"([A-Za-z0-9][A-Za-z0-9\-_/]*\d[A-Za-z0-9\-_/]*)",
            _I,
        ),
        0.9,
        1,
    ),
    # --- ages over 89 (HIPAA): 92 yo, 92-year-old, 092Y, age 93
    (
        "AGE",
        re.compile(
            r"(?<![\w.])0?(?:9\d|1[0-4]\d)\s?-?\s?(?:years?|yrs?|y/o|y\.o\.?|yo|y)"
            r"(?:[-\s]old)?(?!\w)",
            _I,
        ),
        0.85,
        0,
    ),
    ("AGE", re.compile(r"\bage[d]?\s*[:=]?\s*((?:9\d|1[0-4]\d))(?![\w.])", _I), 0.85, 1),
    # --- postal addresses
    ("LOCATION", re.compile(r"\bp\.?\s?o\.?\s*box\s+\d+", _I), 0.9, 0),
    ("LOCATION", re.compile(r"(?<![\w-])\d{5}-\d{4}(?![\w-])"), 0.8, 0),
]


def _split(words: str) -> list[str]:
    return words.split()


_STREET_ABBREVIATIONS = _split(
    "st ave av rd blvd ln dr ct pl ter pkwy hwy cir sq trl expy fwy close row rte aly"
)
# street types that are also anatomy, view or scanner words: never a street suffix here
_NOT_STREET_TYPES = frozenset(
    _split(
        "neck view views station center centers point points light lights well wells key keys run "
        "rest pass path radial union mission spring springs mount common course divide "
        "field fields "
        "land loop oval plain plains port ports shoal shoals cape fall falls flat flats lock locks "
        "curve extension extensions"
    )
)


def _street_suffixes() -> str:
    from faker.providers.address.en_US import Provider as Address

    names = {s.lower() for s in Address.street_suffixes} - _NOT_STREET_TYPES
    names.update(_STREET_ABBREVIATIONS)
    return "(?:" + "|".join(sorted(names, key=len, reverse=True)) + ")"


_STREET_SUFFIX = _street_suffixes()
# a street line's number, name and type are on one line: in OCR text a line is one row of
# text ("1975\nA79510249\nF Aly" is a birth date, an accession number and "F 41Y" misread)
_STREET_RE = re.compile(
    rf"(?<![\w.])\d{{1,6}}[A-Za-z]?[ \t]+((?:[A-Za-z0-9'.-]{{1,30}}[ \t]+){{1,4}}?)"
    rf"{_STREET_SUFFIX}\.?(?!\w)"
    r"(?:\s*,?\s*(?:apt|apartment|suite|ste|unit|#)\.?\s*#?\s*[\w-]+)?",
    _I,
)
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ"
    "|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY"
    "|AS|GU|MP|PR|VI|MH|FM|PW|AA|AE|AP"  # territories and military post offices
)
_CAP_WORD = r"(?<![\w.'-])[A-Z][A-Za-z.'-]{1,30}"
_CITY_STATE_ZIP = re.compile(
    rf"(?:(?<![\w]){_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}},\s*)?(?<![\w])(?:{_US_STATES})\.?,?\s+"
    r"\d{5}(?:-\d{4})?(?![\w-])"
)
# "2884 Harris Plain, New Adamfurt, AK 71059": any house number and capitalised words
# directly before a city, state and ZIP are a street line
_STREET_BEFORE_CITY = re.compile(
    rf"(?<![\w.])\d{{1,6}}[A-Za-z]?[ \t]+{_CAP_WORD}(?:[ \t]+{_CAP_WORD}){{0,4}}"
    r"(?:\s*,?\s*(?i:apt|apartment|suite|ste|unit|#)\.?\s*#?\s*[\w-]+)?,\s*"
    rf"(?={_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}},\s*(?:{_US_STATES})\.?,?\s+\d{{5}})"
)
_CITY_STATE = re.compile(
    rf"(?<![\w])({_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}}),\s*(?:{_US_STATES})(?![\w-])"
)
_UK_POSTCODE = re.compile(r"(?<![\w])[A-Z]{1,2}\d[A-Z\d]?\s\d[A-Z]{2}(?!\w)")

_ORG_CUE = (
    r"(?:hospitals?|hosp|clinics?|klinik|klinikum|medical\s+cent(?:er|re)|med(?:ical)?\.?\s+ctr"
    r"|medical\s+group|health\s?care|health(?:\s+system)?|cent(?:er|re)|ctr|infirmary|institute"
    r"|university|univ|college|foundation|associates|diagnostics|laboratories|labs|sanatorium"
    r"|h[oô]pital|ospedale|krankenhaus|ziekenhuis|hospice|nursing\s+home|rehab(?:ilitation)?)"
)
_ORG_RE = re.compile(
    rf"(?<![\w])(?P<pre>(?:(?:(?<![\w'.&-])[A-Z][\w'.&-]{{0,30}},?|and|&|of|the)[ \t]+){{1,6}})"
    rf"(?i:{_ORG_CUE})(?!\w)"
    rf"(?:\s+(?i:of)\s+[A-Z][\w'.-]*(?:\s+[A-Z][\w'.-]*){{0,2}})?"
)
_ORG_OF_RE = re.compile(
    rf"(?<![\w])(?i:{_ORG_CUE})\s+(?i:of)\s+([A-Z][\w'.-]*(?:\s+[A-Z][\w'.-]*){{0,2}})"
)
_ORG_CONNECTORS = frozenset(
    [
        "general",
        "memorial",
        "regional",
        "community",
        "county",
        "city",
        "state",
        "national",
        "royal",
        "saint",
        "st",
        "mount",
        "mt",
        "university",
        "medical",
        "med",
        "children's",
        "childrens",
        "women's",
        "womens",
        "the",
        "of",
        "and",
        "district",
        "central",
        "north",
        "south",
        "east",
        "west",
        "northern",
        "southern",
        "eastern",
        "western",
    ]
)
_ORG_CUE_WORDS = frozenset(
    [
        "hospital",
        "hospitals",
        "hosp",
        "clinic",
        "clinics",
        "klinik",
        "klinikum",
        "medical",
        "center",
        "centre",
        "ctr",
        "group",
        "health",
        "healthcare",
        "system",
        "infirmary",
        "institute",
        "university",
        "univ",
        "college",
        "foundation",
        "associates",
        "diagnostics",
        "laboratories",
        "labs",
        "sanatorium",
        "hopital",
        "ospedale",
        "krankenhaus",
        "ziekenhuis",
        "hospice",
        "nursing",
        "home",
        "rehab",
        "rehabilitation",
        "med",
    ]
)

# --- person names
_TITLES = frozenset(("dr", "drs", "doctor", "mr", "mrs", "ms", "miss", "mx", "prof", "professor"))
# a DICOM PN written out: components separated by carets, words inside a component by spaces
_CARET_NAME = re.compile(
    r"(?<![\w'.^-])[^\W\d_][\w'.-]{0,40}(?: [\w'.-]{1,40}){0,3}"
    r"(?:\^(?:[\w'.-]{1,40}(?: [\w'.-]{1,40}){0,3})?){1,4}"
    r"(?![\w^])"
)
_TITLE_NAME = re.compile(
    r"\b(?i:dr|drs|doctor|mr|mrs|ms|miss|mx|prof|professor|nurse|sister)\.?[ \t]+"
    r"([^\W\d_][\w'-]{0,30}\.?(?:[ \t]+[^\W\d_][\w'-]{0,30}\.?){0,2})"
)
_NAME_DEGREE = re.compile(
    r"(?<![\w])([A-Z][\w'-]+(?:[ \t]+[A-Z]\.?)?[ \t]+[A-Z][\w'-]+),?[ \t]+"
    r"(?:M\.?D\.?|D\.?O\.?|Ph\.?D\.?|R\.?N\.?|MBBS|FRCR|FRCP)(?!\w)"
)
_LABELLED_NAME = re.compile(
    r"\b(?i:patient(?:'s)?[ \t]+name|patient|pt\.?[ \t]+name|pt|pat\.?[ \t]*name|name"
    r"|referring(?:[ \t]+(?:physician|phys|dr|md|doctor))?|ref\.?[ \t]*(?:phys|dr|md|physician)"
    r"|physician|radiologist|technologist|tech|operator|reader|attending|resident"
    r"|(?:signed|read|dictated|performed|ordered|requested|reported)[ \t]+by)[ \t]*[:=][ \t]*"
    r"([^\W\d_][\w'.^-]*(?:(?:[ \t]*,[ \t]*|[ \t]+|\^)[^\W\d_][\w'.^-]*){0,3})"
)
# words of one name: on one line (OCR text of a frame comes one line per row of text); a
# caret may be read as "*", "~" or a quotation mark ("CHAVEZ ~* ANITA", "GLASS\u201c STEVEN"
# for CHAVEZ^ANITA and GLASS^STEVEN in DejaVu Sans faces)
_NAME_GAP = re.compile(r"^(?:[ \t,^*~\"\u201c\u201d]{1,4}|\.[ \t]*)\Z")
#: FAMILY^GIVEN(^MIDDLE), the caret as written or as OCR reads it (``*``, ``~``, quotes).
_READ_CARET_NAME = re.compile(
    r"(?<![\w^])([^\W\d_]{2,})[ \t]*[\^*~\"\u201c\u201d]{1,2}[ \t]*([|\[]?[^\W\d_]{2,})"
    r"(?:[ \t]*[\^*~\"\u201c\u201d]{1,2}[ \t]*[^\W\d_]+)?(?![\w^])"
)

#: Common surnames (Faker's en_US and en_GB lists) that are also vocabulary words
#: (``never_phi_terms.txt``: anatomy, techniques, eponyms), so the gazetteer never takes them.
_VOCABULARY_SURNAMES = frozenset(
    {
        "branch", "colon", "cross", "dixon", "gray", "grey", "holder", "long", "page", "sharp",
        "short", "small", "stone", "wall", "ward", "willis",
    }
)  # fmt: skip
_SURNAME_WORD = re.compile(
    r"(?<![\w^])(?:" + "|".join(sorted(_VOCABULARY_SURNAMES)) + r")(?![\w^])", re.IGNORECASE
)
#: The word right before a position, one space or tab between.
_WORD_BEFORE = re.compile(r"(?<![\w^])([^\W\d_][\w'-]*)[ \t]\Z")
#: FAMILY, GIVEN in capitals, as screens and forms print a patient's name.
_COMMA_NAME = re.compile(
    r"(?<![\w^,])([A-Z][A-Z'-]{2,})[ \t]*,[ \t]*([|\[]?[A-Z][A-Z'-]{2,})(?![\w^])"
)
#: OCR: FAMILY^GIVEN in capitals with the caret read as a digit ("SMALL7JAMES").
_DIGIT_CARET_NAME = re.compile(r"(?<![\w^])([A-Z]{3,})\d([A-Z]{3,})(?![\w^])")
#: OCR: ``Given Family`` with one capital read in lowercase ("Antonio jones", "james Small").
_LOWERCASED_NAME = re.compile(
    r"(?<![\w^])(?:([A-Z][a-z]{2,})[ \t]([a-z]{3,})|([a-z]{3,})[ \t]([A-Z][a-z]{2,}))(?![\w^])"
)


def ocr_digit_view(text: str) -> str:
    """Return ``text`` with OCR letter/digit confusions fixed inside number-like words.

    A word that is mostly digits has O/o/Q/D read as 0, I/l/|/! as 1, S as 5,
    B as 8, Z as 2 and G as 6. Slashes, dots and dashes inside a word do not
    end it: a date is one word, so its 2-digit day or month is judged with
    the rest (``Q5/22/1949``). The result has the same length, so offsets
    still point into the original.

    >>> ocr_digit_view("MRN 0OO79241S39 Sag Liver")
    'MRN 00079241539 Sag Liver'
    >>> ocr_digit_view("DOB Q5/2Z/1949 5.0mm 30-SEP-2020")
    'DOB 05/22/1949 5.0mm 30-SEP-2020'
    """
    return _NUMBER_WORD.sub(_digits_fixed, text)


_NUMBER_WORD = re.compile(r"[\w|!]+(?:[/.-][\w|!]+)*")
#: Letters OCR reads for digits, as a ``str.translate`` table (O/o/Q/D -> 0, I/l/|/! -> 1, ...).
OCR_DIGITS = str.maketrans("OoQDIl|!SBZG", "000011115826")


def _digits_fixed(match: re.Match[str]) -> str:
    """A word of :func:`ocr_digit_view`, its letters read as digits when it is mostly digits."""
    word = match.group()
    digits = sum(ch.isdigit() for ch in word)
    if digits >= 3 and digits >= 0.6 * len(word):
        return word.translate(OCR_DIGITS)
    return word


# ---------------------------------------------------------------------------- finders


#: Every pattern but e-mail and URL needs a digit (dates, times, phones, IDs, ages, ZIP codes).
_DIGIT = re.compile(r"\d")
_WITHOUT_DIGITS = ("EMAIL", "URL")


#: OCR-only date patterns, for dates as OCR breaks them in light and italic type (date probe).
_OCR_DATE_PATTERNS = (
    # the year split by a space: 10-MAR-1 988, 16-DEC-201 7
    re.compile(
        rf"(?<!\w){_DAY}[-\s.]?{_MONTH}\.?[-\s.,]*(?:[12] [09]\d\d|(?:19|20) \d\d|(?:19|20)\d \d)"
        r"(?!\w)",
        _I,
    ),
    # the month read as junk before DD, YYYY: an,16,2017 (Dec 16, 2017)
    re.compile(rf"(?<!\w)[^\W\d_]{{1,4}}[,.\s]{{1,2}}{_DAY},\s?{_YEAR4}(?!\w)"),
    # the day and its separator read as letters before MM/YYYY: pey09/1993 (09/09/1993)
    re.compile(rf"(?<!\w)[^\W\d_]{{1,4}}{_MON_NUM}/{_YEAR4}(?![\w/]|\.\d)"),
)


#: OCR: a line that is only a number with a space put inside it by OCR (italic digits,
#: ``77591 00045``); an ID when the two groups hold 8 to 12 digits.
_SPLIT_NUMBER_LINE = re.compile(r"(?m)^[ \t]*((\d{3,}) (\d{2,}))[ \t]*$")


def _regex_spans(text: str) -> Iterator[Span]:
    has_digits = _DIGIT.search(text) is not None
    for entity_type, pattern, confidence, group in _PATTERNS:
        if not has_digits and entity_type not in _WITHOUT_DIGITS:
            continue  # cannot match: skip the scan
        for match in pattern.finditer(text):
            start, end = match.span(group)
            if start < 0 or end <= start:
                continue
            if entity_type == "ID" and not _id_like(text[start:end], labelled=group == 1):
                continue
            if (
                entity_type == "PHONE"
                and group == 0
                and pattern.pattern.startswith("(?<![\\w+])\\+")
            ):
                phone_digits = sum(ch.isdigit() for ch in text[start:end])
                if not 8 <= phone_digits <= 15:
                    continue
            yield Span(start, end, entity_type, "pattern", confidence)


def _id_like(value: str, *, labelled: bool) -> bool:
    digits = sum(ch.isdigit() for ch in value)
    if labelled:
        return len(value) >= 4 and digits >= 3
    if "-" in value or "_" in value:
        groups = re.split(r"[-_]", value)
        return digits >= 7 and max(len(g) for g in groups) >= 3
    return True


def _address_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    if _DIGIT.search(text) is None:  # only "City, ST" can match without a house number or ZIP
        if "," in text:
            yield from _city_state_spans(text, vocab)
        return
    for match in _STREET_RE.finditer(text):
        words = [fold(w) for w in WORD_RE.findall(match.group(1))]
        if any(not vocab.is_safe_word(w) or any(c.isdigit() for c in w) for w in words):
            yield Span(match.start(), match.end(), "LOCATION", "pattern", 0.85)
    for match in _CITY_STATE_ZIP.finditer(text):
        yield Span(match.start(), match.end(), "LOCATION", "pattern", 0.85)
    for match in _STREET_BEFORE_CITY.finditer(text):
        yield Span(match.start(), match.end(), "LOCATION", "pattern", 0.8)
    yield from _city_state_spans(text, vocab)
    if _STREET_RE.search(text):
        for match in _UK_POSTCODE.finditer(text):
            yield Span(match.start(), match.end(), "LOCATION", "pattern", 0.7)


def _city_state_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    for match in _CITY_STATE.finditer(text):
        words = [fold(w) for w in WORD_RE.findall(match.group(1))]
        if any(not vocab.is_safe_word(w) for w in words):
            yield Span(match.start(), match.end(), "LOCATION", "pattern", 0.7)


def _org_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    for match in _ORG_RE.finditer(text):
        before = list(WORD_RE.finditer(text, match.start("pre"), match.end("pre")))
        # the name starts after the last word that cannot belong to it
        # ("CT CHEST AT MERCY HOSPITAL", "DR SMITH MERCY HOSPITAL")
        first = 0
        for index, word in enumerate(before):
            if _org_breaker(fold(word.group()), vocab):
                first = index + 1
        while first < len(before) and fold(before[first].group()) in {"and", "of", "the"}:
            first += 1
        words = [fold(w.group()) for w in WORD_RE.finditer(text, match.start(), match.end())]
        if first >= len(before) or not any(_org_distinctive(w, vocab) for w in words):
            continue
        yield Span(before[first].start(), match.end(), "ORG", "pattern", 0.75)
    for match in _ORG_OF_RE.finditer(text):
        rest = [fold(w) for w in WORD_RE.findall(match.group(1))]
        if any(_org_distinctive(w, vocab) for w in rest):
            yield Span(match.start(), match.end(), "ORG", "pattern", 0.75)


def _org_breaker(word: str, vocab: Vocabulary) -> bool:
    if word in _ORG_CUE_WORDS or word in _ORG_CONNECTORS:
        return False
    return vocab.is_safe_word(word) or word.isdigit() or word in _TITLES


def _org_distinctive(word: str, vocab: Vocabulary) -> bool:
    return not (
        word in _ORG_CUE_WORDS
        or word in _ORG_CONNECTORS
        or vocab.is_safe_word(word)
        or any(ch.isdigit() for ch in word)
        or len(word) < 2
    )


def _trim_name(text: str, start: int, end: int, vocab: Vocabulary) -> tuple[int, int] | None:
    """Shrink a candidate name to its words up to the first vocabulary word; None if empty."""
    words = [w for w in WORD_RE.finditer(text, start, end)]
    kept = []
    for word in words:
        folded = fold(word.group())
        if (vocab.is_safe_word(folded) and len(folded) > 1) or not word.group()[0].isupper():
            break
        kept.append(word)
    while kept and len(kept[-1].group()) == 1:
        kept.pop()
    if not kept or all(len(w.group()) == 1 for w in kept):
        return None
    return kept[0].start(), kept[-1].end()


def _name_run(words: list[re.Match[str]], vocab: Vocabulary) -> list[re.Match[str]]:
    """The first word (next to a caret) unless it is vocabulary, then name-like words."""
    kept: list[re.Match[str]] = []
    for index, word in enumerate(words):
        folded = fold(word.group())
        if (vocab.is_safe_word(folded) and len(folded) > 1) or folded.isdigit():
            break
        if (
            index > 0
            and len(folded) == 1
            and (vocab.is_safe_word(folded) or word.group().islower())
        ):
            break
        if index > 0 and len(folded) > 1 and vocab.is_english(folded) and not vocab.is_name(folded):
            break
        kept.append(word)
    return kept


def _name_like(folded: str, vocab: Vocabulary) -> bool:
    """A word that may be (part of) a name: not vocabulary, a known name or not English."""
    if len(folded) < 2 or not folded.isalpha() or vocab.is_safe_word(folded):
        return False
    return vocab.is_name(folded) or not vocab.is_english(folded)


_NOT_NAME_ENDINGS = ("ed", "ing", "tion", "sion", "ment", "ness", "ly", "ies", "ous", "ive", "able")


def _could_be_name(folded: str, vocab: Vocabulary) -> bool:
    """A known name, a word the dictionary does not know, or a rare one shaped like a name."""
    if vocab.is_name(folded) or not vocab.is_english(folded):
        return True
    if folded in vocab.common or folded in vocab.stop:
        return False
    return not folded.endswith(_NOT_NAME_ENDINGS) and not (
        folded.endswith("s") and folded[:-1] in vocab.english
    )


def _ambiguous_title(matched: str) -> bool:
    title = matched.split()[0]
    return title in {"MR", "MS", "DR"}


def _name_spans(text: str, vocab: Vocabulary, ocr: bool = False) -> Iterator[Span]:
    carets = _CARET_NAME.finditer(text) if "^" in text else ()
    for match in carets:
        # words before the first and after the last caret that are vocabulary are not
        # part of the name ("f/u for DOE^JANE PORTABLE")
        # ("Patient DOE^JANE seen"): the words next to the carets belong to the name, words
        # further out only when they look like names
        found = list(WORD_RE.finditer(text, match.start(), match.end()))
        first_caret = text.index("^", match.start())
        last_caret = text.rindex("^", match.start(), match.end())
        before = [w for w in found if w.end() <= first_caret]
        after = [w for w in found if w.start() > last_caret]
        inner = [w for w in found if first_caret < w.start() and w.end() <= last_caret]
        keep_before = _name_run(list(reversed(before)), vocab)[::-1]
        keep_after = _name_run(after, vocab)
        found = keep_before + inner + keep_after
        # a person name has a name-like word: "DOE^JANE", not "Thorax^01_Thorax_Routine"
        if found and any(_name_like(fold(w.group()), vocab) for w in found):
            end = found[-1].end()
            while end < match.end() and text[end] == "^":  # empty trailing components
                end += 1
            yield Span(found[0].start(), end, "PERSON", "pattern", 0.9)
    labelled = (_LABELLED_NAME,) if ":" in text or "=" in text else ()
    for regex in (_TITLE_NAME, _NAME_DEGREE, *labelled):
        for match in regex.finditer(text):
            trimmed = _trim_name(text, match.start(1), match.end(1), vocab)
            if trimmed is None or not text[trimmed[0]].isupper():
                continue
            if regex is _TITLE_NAME and _ambiguous_title(match.group(0)):
                # "MR ENTEROGRAPHY", "MS LESIONS", "DR 60": a bare MR/MS/DR in capitals is a
                # modality, a disease or a setting unless a known name follows
                first = fold(WORD_RE.search(text, trimmed[0]).group())  # type: ignore[union-attr]
                if first not in vocab.first_names and first not in vocab.last_names:
                    continue
            yield Span(trimmed[0], trimmed[1], "PERSON", "pattern", 0.85)
    yield from _gazetteer_spans(text, vocab)
    yield from _caret_name_spans(text, vocab)
    if "," in text:
        yield from _comma_name_spans(text, vocab)
    yield from _given_vocabulary_surname_spans(text, vocab)
    if ocr:
        yield from _ocr_name_spans(text, vocab)


def _caret_name_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    """A DICOM name written with its caret, the given name a known first name: a name even
    when the family name is a common word (``SMALL^JAMES``, ``CROSS ~* PAUL`` as OCR
    reads a caret), which the gazetteer would not take.

    >>> text = "SMALL^JAMES CT * CHEST CROSS ~* PAUL"
    >>> [text[s.start : s.end] for s in _caret_name_spans(text, vocabulary())]
    ['SMALL^JAMES', 'CROSS ~* PAUL']
    """
    for match in _READ_CARET_NAME.finditer(text):
        if _first_name(match.group(2), vocab) is not None:
            yield Span(match.start(), match.end(), "PERSON", "pattern", 0.7)


def _first_name(word: str, vocab: Vocabulary) -> str | None:
    """``word`` folded when it is a known first name, also with the J or I it starts with
    read by OCR as a bar or a bracket (``|AMES``, ``[AMES``: "james"); else None."""
    readings = (letter + word[1:] for letter in "ji") if word[:1] in ("|", "[") else (word,)
    return next((f for f in map(fold, readings) if f in vocab.first_names), None)


def _given_name(word: str, vocab: Vocabulary) -> bool:
    """A known first name (see :func:`_first_name`) that is no common word."""
    first = _first_name(word, vocab)
    return first is not None and first not in vocab.common and first not in vocab.stop


def _ocr_name_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    """OCR misreads of a name with a known first name that the other rules miss: the
    caret read as a digit (``SMALL7JAMES``), one capital read in lowercase (``Antonio
    jones``, ``james Small``; the family name a known surname that is no English word,
    or one of :data:`_VOCABULARY_SURNAMES`).

    >>> text = "SMALL7JAMES SE4IM2 Antonio jones Sigmoid colon james Small"
    >>> [text[s.start : s.end] for s in _ocr_name_spans(text, vocabulary())]
    ['SMALL7JAMES', 'Antonio jones', 'james Small']
    """
    for match in _DIGIT_CARET_NAME.finditer(text):
        if _given_name(match.group(2), vocab) and fold(match.group(1)) not in vocab.stop:
            yield Span(match.start(), match.end(), "PERSON", "pattern", 0.7)
    for match in _LOWERCASED_NAME.finditer(text):
        given, family = (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        f = fold(family)
        if not _given_name(given, vocab):
            continue
        if (f in vocab.last_names and not vocab.is_english(f) and not vocab.is_safe_word(f)) or (
            family.istitle() and f in _VOCABULARY_SURNAMES
        ):
            yield Span(match.start(), match.end(), "PERSON", "pattern", 0.7)


def _comma_name_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    """``FAMILY, GIVEN`` in capitals, the given name a known first name that is no common
    word: a name even when the family name is vocabulary (``SMALL, JAMES``, ``CROSS,
    PAUL``), which the gazetteer would not take. Labels with commas (``CHEST, PA``,
    ``SAG, T2``, ``ABDOMEN, PORTABLE``) have no first name after the comma.

    >>> text = "SMALL, JAMES  CHEST, PA  ABDOMEN, PORTABLE  Small, James"
    >>> [text[s.start : s.end] for s in _comma_name_spans(text, vocabulary())]
    ['SMALL, JAMES']
    """
    for match in _COMMA_NAME.finditer(text):
        if _given_name(match.group(2), vocab) and fold(match.group(1)) not in vocab.stop:
            yield Span(match.start(), match.end(), "PERSON", "pattern", 0.7)


def _given_vocabulary_surname_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    """``Given Family`` (or ``GIVEN FAMILY``) where the family name is a common surname that
    is also a vocabulary word (``James Small``, ``PAUL CROSS``) and the given name a known
    first name that is no common word. Anatomy keeps its words (``Sigmoid Colon``,
    ``Chest Wall``, ``Kidney Stone``: no first name before them).

    >>> text = "James Small  Sigmoid Colon  Chest Wall  PAUL CROSS  James small"
    >>> [text[s.start : s.end] for s in _given_vocabulary_surname_spans(text, vocabulary())]
    ['James Small', 'PAUL CROSS']
    """
    lower = text.lower()
    if not any(word in lower for word in _VOCABULARY_SURNAMES):
        return
    for family in _SURNAME_WORD.finditer(text):
        given = _WORD_BEFORE.search(text, max(0, family.start() - 40), family.start())
        if given is None:
            continue
        g, f = given.group(1), family.group()
        if not ((g.isupper() and f.isupper()) or (g.istitle() and f.istitle())):
            continue
        if _given_name(g, vocab):
            yield Span(given.start(1), family.end(), "PERSON", "pattern", 0.7)


def _gazetteer_spans(text: str, vocab: Vocabulary) -> Iterator[Span]:
    """Runs of 2-4 capitalised words that read as a name.

    Either one word is a known first name and the others could be names
    ("KAUFMAN SCOTT", "JANE DOE"), or every word is unknown to the dictionary,
    the vocabulary and the gazetteer alike ("KOVACS IBOLYA", "Erno Korzonek").
    """
    run: list[re.Match[str]] = []

    def flush() -> Iterator[Span]:
        words = [w for w in run if len(w.group()) > 1]
        if len(words) >= 2:
            folded = [fold(w.group()) for w in words]
            known_first = any(f in vocab.first_names for f in folded)
            plausible = all(_could_be_name(f, vocab) for f in folded)
            if known_first and plausible:
                yield Span(words[0].start(), words[-1].end(), "PERSON", "pattern", 0.7)
            elif all(len(f) >= 3 and not vocab.is_english(f) for f in folded) and any(
                len(f) >= 4 for f in folded
            ):
                yield Span(words[0].start(), words[-1].end(), "PERSON", "pattern", 0.55)
        run.clear()

    previous_end = 0
    for word in WORD_RE.finditer(text):
        token = word.group()
        folded = fold(token)
        candidate = (
            not any(ch.isdigit() for ch in token)
            and (token[0].isupper())
            and (len(token) == 1 or not vocab.is_safe_word(folded))
        )
        joined = bool(run) and _NAME_GAP.match(text[previous_end : word.start()]) is not None
        if run and not (candidate and joined):
            yield from flush()
        if candidate and len(run) < 4:
            run.append(word)
        elif candidate:
            yield from flush()
            run.append(word)
        previous_end = word.end()
    yield from flush()


def find_patterns(text: str, *, ocr: bool = False, vocab: Vocabulary | None = None) -> list[Span]:
    """Find PHI by patterns and name heuristics (overlaps allowed; the detector merges them).

    Parameters
    ----------
    text
        Any string.
    ocr
        The text came from OCR: number-like words are read through
        :func:`ocr_digit_view` first (offsets are unchanged).
    vocab
        Word lists to use (default: :func:`vocabulary`; the detector passes
        one extended with ``policy.text.allow``).

    Returns
    -------
    list of Span
        Sorted by start; spans may overlap.

    Examples
    --------
    >>> [(s.entity_type, s.start, s.end) for s in find_patterns("DOB 07/22/1943")]
    [('DATE', 4, 14)]
    """
    vocab = vocab if vocab is not None else vocabulary()
    view = ocr_digit_view(text) if ocr else text
    spans: list[Span] = list(_regex_spans(view))
    if ocr and _DIGIT.search(view):
        for pattern in _OCR_DATE_PATTERNS:
            spans.extend(Span(*m.span(), "DATE", "pattern", 0.7) for m in pattern.finditer(view))
        spans.extend(
            Span(*m.span(1), "ID", "pattern", 0.7)
            for m in _SPLIT_NUMBER_LINE.finditer(view)
            if 8 <= len(m.group(2)) + len(m.group(3)) <= 12
        )
    spans.extend(_address_spans(text, vocab))
    spans.extend(_org_spans(text, vocab))
    spans.extend(_name_spans(text, vocab, ocr))
    spans.sort(key=lambda s: (s.start, -s.end))
    return spans


def words(text: str) -> Iterable[re.Match[str]]:
    """Iterate over the words of ``text`` (see :data:`WORD_RE`)."""
    return WORD_RE.finditer(text)
