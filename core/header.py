"""Header de-identification: apply the PS3.15 profile to every element at every depth.

For each data element, in every sequence item at any depth, the header step
decides one action and applies it:

1. The reference product's 67 passthrough attributes (:data:`PASSTHROUGH`)
   are never sent to text detection. With ``passthrough: profile`` (default)
   the seven UIDs / instance dates among them (:data:`PROFILE_FOLLOWING`)
   follow the profile (remap, shift) and the other 60 are kept as they are.
   With ``passthrough: verbatim`` (the ``seed-compatible`` policy) all 67 are
   kept verbatim.
2. ``seed-compatible`` only: every other element with a free-text VR (AE, LO,
   LT, PN, SH, ST, UC, UT, UR) goes to text detection and keeps its non-PHI
   words, whatever the profile says. UIDs are all kept (as with Retain UIDs:
   the instance UIDs among the 67 are kept, so references to them must be
   too). Every other element (dates, times, ages, coded and numeric values,
   binary values, sequences, private and overlay attributes) follows the
   default rules below, so dates are still shifted and private tags removed.
3. Attributes in PS3.15 Table E.1-1 take the table's action under the
   policy's options (see :mod:`dicomscrub.core.profile`):

   - ``X`` remove. Removing Overlay Data removes its whole overlay group.
   - ``Z`` empty value; person names and patient/study identifiers get a
     pseudonym instead (Z allows a consistent dummy); sequences become empty.
   - ``D`` dummy value: person names and identifiers get pseudonyms, UIDs are
     remapped, other text a neutral ``ANON...`` token, dates ``19000101``,
     numbers 0, binary values zero bytes. A sequence keeps its items; inside
     it every rule applies and free text gets dummies instead of cleaning.
   - ``K`` keep (ages over 89 become ``090Y``).
   - ``C`` clean: DA/DT shifted by the patient's offset (TM and time-zone
     values unchanged: the shift is whole days); free text cleaned by the
     text detector; sequences kept with every rule applied inside; overlay
     and curve data kept for the pixel step (Clean Graphics).
   - ``U`` UIDs remapped to ``2.25.<HMAC>``; sequences kept, UIDs inside remapped.

4. Attributes not in the table: UIDs remapped unless they are well-known
   DICOM UIDs (pydicom's UID dictionary or the ``1.2.840.10008.`` root);
   DA/DT shifted like the profile's dates; AS capped at ``090Y``; person
   names (PN) pseudonymized; other free text (AE, LO, LT, SH, ST, UC, UT, UR)
   cleaned by the text detector; numeric, coded (CS), AT and binary values
   kept; sequences kept with every rule applied inside.
5. Private attributes are removed (with their creators), unless Retain Safe
   Private is on and the attribute is on the safe list
   (``data/safe_private.json``).

Every action yields an :class:`~dicomscrub.core.results.Entity` with a keyed
HMAC of the original value, never the value itself.

Examples
--------
>>> from pydicom.dataset import Dataset
>>> from dicomscrub.core.policy import Policy
>>> from dicomscrub.core.pseudonyms import Pseudonymizer
>>> ds = Dataset()
>>> ds.PatientName = "DOE^JANE"; ds.PatientID = "12345"; ds.Rows = 2
>>> step = HeaderStep(Policy(), Pseudonymizer("k"))
>>> outcome = step.run(ds, patient_key="12345")
>>> str(ds.PatientName).startswith("PATIENT^"), ds.PatientID.startswith("PID-"), ds.Rows
(True, True, 2)
>>> sorted({e.keyword for e in outcome.entities})
['PatientID', 'PatientName']
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

from pydicom import config
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]
from pydicom.valuerep import MAX_VALUE_LEN

from .dates import cap_age, shift_da, shift_dt
from .errors import DeidError, ErrorCode
from .policy import Policy
from .profile import ProfileAction, ProfileTable
from .pseudonyms import Pseudonymizer
from .read import (
    dataset_codec,
    decode_values,
    element_vr,
    keyword_of,
    raw_items,
    raw_value,
    restore_raw,
)
from .results import Action, Detector, Entity
from .text_patterns import DEVICE_KEYWORDS
from .verify import DUMMY_VALUES, DenyList

log = logging.getLogger(__name__)

#: The reference product's passthrough list, exactly as given (67 names, two non-standard).
PASSTHROUGH: tuple[str, ...] = (
    "AcquisitionNumber", "BitsAllocated", "BitsStored", "Columns", "ConvolutionKernel",
    "DataCollectionCenter", "DataCollectionCenterPatient", "DataCollectionDiameter",
    "DetectorBinning", "DistanceSourceToDirector", "DistanceSourceToPatient",
    "DistanceSourceToDetector", "Exposure", "ExposureTime", "FieldOfViewDimensions",
    "FieldOfViewShape", "FieldOfViewOrigin", "FilterType", "FrameOfReferenceUID", "FocalSpots",
    "GantryDetectorTilt", "GeneratorPower", "Grid", "HighBit", "ImageOrientationPatient",
    "ImagePositionPatient", "ImageType", "ImagerPixelSpacing", "InstanceCreationDate",
    "InstanceCreationTime", "InstanceNumber", "IrradiationEventUID", "KVP",
    "LargestImagePixelValue", "Modality", "NumberOfPhaseEncodingSteps",
    "NumberOfStudyRelatedInstances", "PhotometricInterpretation", "PixelData",
    "PixelPaddingValue", "PixelRepresentation", "PixelSpacing", "PositionReferenceIndicator",
    "ReconstructionDiameter", "ReconstructionTargetCenterPatient", "RescaleIntercept",
    "RescaleSlope", "RotationDirection", "Rows", "SOPClassUID", "SOPInstanceUID",
    "SamplesPerPixel", "ScanOptions", "SeriesInstanceUID", "SeriesNumber", "SliceLocation",
    "SliceThickness", "SmallestImagePixelValue", "SoftwareVersions", "SpatialResolution",
    "SpecificCharacterSet", "StudyInstanceUID", "TableHeight", "WindowCenter", "WindowWidth",
    "XRayTubeCurrent", "XRayTubeCurrentInuA",
)  # fmt: skip

#: Passthrough attributes that follow the profile under the default policy.
PROFILE_FOLLOWING = frozenset(
    {
        "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
        "IrradiationEventUID", "InstanceCreationDate", "InstanceCreationTime",
    }
)  # fmt: skip

#: VRs whose values are free text (sent to text detection when not in the table).
TEXT_VRS = frozenset({"AE", "LO", "LT", "SH", "ST", "UC", "UT", "UR", "PN"})
STRING_VRS = TEXT_VRS | {"CS", "DA", "DT", "TM", "AS", "UI", "DS", "IS"}
BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN"})
NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
#: Attributes of code sequences: kept as codes even inside dummy (D) sequences.
CODE_KEYWORDS = frozenset(
    {
        "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
        "LongCodeValue", "URNCodeValue", "ContextIdentifier", "ContextUID",
        "MappingResource", "ContextGroupVersion", "ValueType", "RelationshipType",
    }
)  # fmt: skip
#: Pseudonym prefixes of identifiers (see :mod:`dicomscrub.core.pseudonyms`).
ID_PREFIX = {
    "PatientID": "PID",
    "OtherPatientIDs": "PID",
    "AccessionNumber": "ACC",
    "StudyID": "SID",
}
DUMMY_DATE = DUMMY_VALUES["DA"]
TEXT_MAX_LEN = {**MAX_VALUE_LEN, "PN": 64, "UC": 2**32 - 2, "UT": 2**32 - 2, "UR": 2**32 - 2}
#: Well-known UIDs are kept: standard ones never identify a patient.
DICOM_UID_ROOT = "1.2.840.10008."

PRIVATE_CREATOR_RANGE = range(0x10, 0x100)
#: VRs of attributes outside the table that the header step changes or inspects.
ACTED_ON_VRS = TEXT_VRS | {"SQ", "UI", "DA", "DT", "AS"}

#: Free text with its PHI spans replaced, and the spans, by ``(text, device)``.
CleanedTexts = dict[tuple[str, bool], tuple[str, list[Any]]]
#: How many records' cleaned texts a header step keeps (the files of a series share a
#: record: the engine gives them the same detector and deny-list).
CLEANED_RECORDS = 16
#: How many cleaned texts it keeps per record.
CLEANED_TEXTS = 10_000


class SpanLike(Protocol):
    """What the header step reads from a text detector's span."""

    start: int
    end: int
    entity_type: str
    detector: str
    confidence: float


class TextDetectorLike(Protocol):
    """The part of :class:`dicomscrub.core.text_detect.TextDetector` the header step uses."""

    def detect(self, text: str, *, ocr: bool = False, device: bool = False) -> list[Any]: ...


@dataclass(frozen=True)
class DenySpan:
    """A deny-list match the detector left in the text (same fields as ``text_detect.Span``)."""

    start: int
    end: int
    entity_type: str
    detector: Detector
    confidence: float


@dataclass
class HeaderOutcome:
    """What the header step did to one dataset.

    Attributes
    ----------
    entities
        One record per acted-on attribute and per PHI span in free text.
    dates_shifted
        Whether any date was shifted.
    text_cleaned
        Whether any free text went through the text detector.
    dummy_text
        Whether free text was replaced by dummies because no detector was available.
    """

    entities: list[Entity] = field(default_factory=list)
    dates_shifted: bool = False
    text_cleaned: bool = False
    dummy_text: bool = False


@cache
def _safe_private() -> frozenset[tuple[str, int, int]]:
    text = files(__package__).joinpath("data", "safe_private.json").read_text(encoding="utf-8")
    rows = json.loads(text)["attributes"]
    return frozenset(
        (row["creator"].strip().upper(), int(row["group"], 16), int(row["element"], 16))
        for row in rows
    )


@cache
def check_passthrough_names() -> tuple[str, ...]:
    """Warn once per process about passthrough names that are not DICOM keywords."""
    unknown = tuple(name for name in PASSTHROUGH if tag_for_keyword(name) is None)
    if unknown:
        log.warning(
            "passthrough list: %d names are not standard DICOM keywords and match nothing: %s",
            len(unknown),
            ", ".join(unknown),
        )
    return unknown


def is_well_known_uid(value: str) -> bool:
    """True for UIDs defined by DICOM (SOP classes, transfer syntaxes, coding schemes...).

    >>> is_well_known_uid("1.2.840.10008.5.1.4.1.1.2"), is_well_known_uid("1.2.3.4")
    (True, False)
    """
    return value in UID_dictionary or value.startswith(DICOM_UID_ROOT)


@cache
def entity_type_for(keyword: str, vr: str, private: bool = False) -> str:
    """Entity type of a whole attribute, from its VR and keyword.

    >>> entity_type_for("PatientName", "PN"), entity_type_for("InstitutionName", "LO")
    ('PERSON', 'ORG')
    """
    if private:
        return "PRIVATE"
    if vr == "PN":
        return "PERSON"
    if vr in ("DA", "DT"):
        return "DATE"
    if vr == "TM":
        return "TIME"
    if vr == "UI":
        return "UID"
    if vr == "AS":
        return "AGE"
    if keyword.startswith(("Overlay", "Curve")) or keyword == "":
        return "OVERLAY" if keyword.startswith("Overlay") else "OTHER"
    if "Institution" in keyword or "Organization" in keyword or "Sponsor" in keyword:
        return "ORG"
    if "Address" in keyword or "Residence" in keyword or "Country" in keyword:
        return "LOCATION"
    if "Telephone" in keyword or "Telecom" in keyword:
        return "PHONE"
    if keyword.endswith(("ID", "IDs", "Number", "Numbers", "Identifier")):
        return "ID"
    return "TEXT" if vr in TEXT_VRS else "OTHER"


@cache
def _tag_str(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _values(element: DataElement) -> list[str]:
    value = element.value
    if value is None or value == "":
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _set_values(element: DataElement, values: list[str]) -> None:
    if not values:
        element.value = ""
    elif len(values) == 1:
        element.value = values[0]
    else:
        element.value = values


def _fit(text: str, vr: str) -> str:
    limit = TEXT_MAX_LEN.get(vr, 64)
    return text if len(text) <= limit else text[:limit].rstrip()


class HeaderStep:
    """Apply the header rules of one policy; one instance serves many files.

    Parameters
    ----------
    policy
        The policy (its options, passthrough mode, text marker, depth limit).
    pseudonymizer
        Keyed pseudonyms and audit HMACs.
    table
        The PS3.15 table (the packaged one by default).
    keep_raw_text
        Fill ``Entity.raw_text`` with original values (in memory only).
    """

    def __init__(
        self,
        policy: Policy,
        pseudonymizer: Pseudonymizer,
        table: ProfileTable | None = None,
        *,
        keep_raw_text: bool = False,
    ) -> None:
        self.policy = policy
        self.pseudo = pseudonymizer
        self.table = table or ProfileTable.load()
        self.keep_raw_text = keep_raw_text
        self.verbatim = policy.passthrough == "verbatim"
        self._options = policy.options
        self._actions: dict[int, ProfileAction | None] = {}
        self._untouched: dict[tuple[int, str | None], bool] = {}
        self._passthrough_tags = frozenset(
            t for t in (tag_for_keyword(k) for k in PASSTHROUGH) if t is not None
        )
        following = {tag_for_keyword(k) for k in PROFILE_FOLLOWING}
        self._keep_tags = (
            self._passthrough_tags if self.verbatim else self._passthrough_tags - following
        )
        self._safe = _safe_private() if policy.options.retain_safe_private else frozenset()
        # seed-compatible keeps the instance UIDs of the 67 verbatim: keep every UID, or
        # references (ReferencedSOPInstanceUID ...) would no longer match them
        self.keep_uids = policy.options.retain_uids or self.verbatim
        dates = policy.options
        self._date_mode = (
            "keep"
            if dates.retain_longitudinal_full_dates
            else "shift"
            if dates.retain_longitudinal_modified_dates
            else "dummy"
        )
        self._cleaned: dict[
            tuple[int, int], tuple[TextDetectorLike, DenyList | None, CleanedTexts]
        ] = {}
        check_passthrough_names()

    # -- entry point ------------------------------------------------------------------------
    def run(
        self,
        ds: Dataset,
        *,
        patient_key: str,
        detector: TextDetectorLike | None = None,
        deny: DenyList | None = None,
    ) -> HeaderOutcome:
        """De-identify ``ds`` in place (not its file meta) and return what was done.

        Parameters
        ----------
        ds
            The dataset; modified in place.
        patient_key
            The patient's identity (from the original dataset) that fixes the date offset.
        detector
            The text detector for this record; ``None`` replaces free text by dummies
            (nothing unchecked is kept).
        deny
            The original record's identifiers. Whatever the detector leaves of them
            in free text is replaced too (detector ``denylist``), so that no name part,
            ID or birth date of the record survives in cleaned text.
        """
        offset = self.pseudo.date_offset_days(patient_key)
        cleaned = self.cleaned_texts(detector, deny) if detector is not None else {}
        run = _Run(self, detector, offset, deny, cleaned)
        try:
            run.dataset(ds, "", 0, dummy_text=False, codec="latin_1")
        except DeidError:
            raise
        except RecursionError:
            raise DeidError(ErrorCode.SEQUENCE_TOO_DEEP, "sequences nest too deeply") from None
        return run.outcome

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the cleaned texts (they hold the engine's detectors)."""
        return {**self.__dict__, "_cleaned": {}}

    def cleaned_texts(self, detector: TextDetectorLike, deny: DenyList | None) -> CleanedTexts:
        """The texts already cleaned with this detector and deny-list.

        Detection depends only on the text and these two, and the engine gives the
        files of a series the same ones, so those files share their cleaned texts.
        The entry holds both objects: their ``id`` cannot be reused while it exists.
        Only single dict operations: safe for threads sharing the step.
        """
        key = (id(detector), id(deny))
        entry = self._cleaned.get(key)
        if entry is None:
            if len(self._cleaned) >= CLEANED_RECORDS:
                self._cleaned.clear()  # the files of a series come together: start afresh
            entry = self._cleaned[key] = (detector, deny, {})
        return entry[2]

    def untouched(self, tag: int, raw_vr: str | None) -> bool:
        """True when an element is kept as is whatever its value (no need to decode it)."""
        key = (tag, raw_vr)
        found = self._untouched.get(key)
        if found is None:
            vr = element_vr(tag, raw_vr)
            if tag in self._keep_tags:
                found = True
            elif self.action(tag) is not None:
                found = False
            else:
                found = vr not in ACTED_ON_VRS
            self._untouched[key] = found
        return found

    def action(self, tag: int) -> ProfileAction | None:
        """The table's action for a tag under this policy's options (cached)."""
        try:
            return self._actions[tag]
        except KeyError:
            found = self.table.action(tag, self._options)
            self._actions[tag] = found
            return found


class Field:
    """One element of one dataset, read from its raw bytes and replaced only when changed.

    Elements that are kept are never decoded, so pydicom writes their original
    bytes back; changed elements are replaced by new elements.

    ``key`` is the element's key in ``ds`` (pydicom's tag object): setting and removing
    by that very object skips pydicom's tag conversion and comparisons. ``tag`` is the
    same tag as a plain int, for the caches and the bit tests.
    """

    __slots__ = ("_original", "_values", "codec", "ds", "key", "path", "raw", "tag", "vr")

    def __init__(
        self, ds: Dataset, key: BaseTag, vr: str, raw: Any, codec: str | None, path: str
    ) -> None:
        self.ds, self.key, self.vr, self.raw, self.codec, self.path = ds, key, vr, raw, codec, path
        self.tag = int(key)
        self._values: list[str] | None = None
        self._original: str | bytes | None = None

    @property
    def keyword(self) -> str:
        return "" if (self.tag >> 16) & 1 else keyword_of(self.tag)

    @property
    def values(self) -> list[str]:
        """The values as strings (decoded from the raw bytes when the charset allows)."""
        if self._values is None:
            self._values = self._decode()
        return self._values

    def _decode(self) -> list[str]:
        try:
            return decode_values(self.ds, self.tag, self.vr, self.raw, self.codec)
        except Exception as exc:
            raise DeidError(
                ErrorCode.INVALID_VALUE,
                f"{_tag_str(self.tag)} could not be decoded ({type(exc).__name__})",
            ) from None

    @property
    def original(self) -> str | bytes:
        """The original value for the audit HMAC (text, or bytes for binary values)."""
        if self._original is not None:
            return self._original
        if self.vr in STRING_VRS:
            return "\\".join(self.values)
        if self.vr == "SQ":  # decoded or not
            return f"<sequence {_tag_str(self.tag)}>"
        value = raw_value(self.ds, self.raw)
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        return "" if value is None else str(value)

    def set(self, value: Any) -> None:
        """Replace the element with a new value (a list for several values)."""
        if self._original is None:
            self._original = self.original
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else (value or "")
        # values are valid by construction (pseudonyms, shifted dates, fitted text); pydicom's
        # checks would only warn, and the engine does not show pydicom's warnings
        element = DataElement(self.key, self.vr, value, validation_mode=config.IGNORE)
        if self.vr == "SQ" or self.tag in _PYDICOM_TRACKED:
            self.ds[self.key] = element
        else:  # a plain element: nothing else for pydicom's __setitem__ to keep up to date
            self.ds._dict[self.key] = element
        self._values = None
        self.raw = element

    def remove(self) -> None:
        try:
            self._original = self.original
        except DeidError:  # undecodable: the audit HMAC is of the raw bytes
            self._original = _raw_bytes(self)
        if (self.tag >> 16) & 1 or self.tag in _PYDICOM_TRACKED:
            del self.ds[self.key]
        else:
            del self.ds._dict[self.key]

    def sequence(self) -> Sequence:
        element = self.ds[self.key]
        return element.value if element.value is not None else Sequence()


#: Elements whose setting or removal pydicom's Dataset tracks (character set, pixel data).
_PYDICOM_TRACKED = frozenset({0x00080005, 0x00280103, 0x7FE00008, 0x7FE00009, 0x7FE00010})


class _Run:
    """The state of one dataset's walk."""

    def __init__(
        self,
        step: HeaderStep,
        detector: TextDetectorLike | None,
        offset_days: int,
        deny: DenyList | None,
        cleaned: CleanedTexts,
    ) -> None:
        self.step = step
        self.detector = detector
        self.deny = deny
        self.offset = offset_days
        self.outcome = HeaderOutcome()
        self.pseudo = step.pseudo
        self.marker = step.policy.text.marker
        self.max_depth = step.policy.max_sequence_depth
        self.cleaned = cleaned  # shared by the runs of one record (see HeaderStep.cleaned_texts)
        self.mutations = 0

    # -- entities ---------------------------------------------------------------------------
    def record(
        self,
        field: Field,
        action: Action,
        *,
        original: str | bytes | None = None,
        replacement: str | None = None,
        entity_type: str | None = None,
    ) -> None:
        value = field.original if original is None else original
        private = bool((field.tag >> 16) & 1)
        keyword = field.keyword
        self.outcome.entities.append(
            Entity(
                location="header",
                tag=_tag_str(field.tag),
                keyword=keyword,
                sequence_path=field.path,
                entity_type=entity_type or entity_type_for(keyword, field.vr, private),
                detector="profile",
                action=action,
                value_hmac=self.pseudo.hmac(value),
                replacement=replacement,
                raw_text=value if self.step.keep_raw_text and isinstance(value, str) else None,
            )
        )

    # -- walk -------------------------------------------------------------------------------
    def dataset(
        self, ds: Dataset, path: str, depth: int, *, dummy_text: bool, codec: str | None
    ) -> None:
        if depth > self.max_depth:
            raise DeidError(
                ErrorCode.SEQUENCE_TOO_DEEP,
                f"sequences nest deeper than the policy's limit of {self.max_depth}",
            )
        codec = dataset_codec(ds, codec)
        overlay_groups_removed: set[int] = set()
        private_kept_blocks: set[tuple[int, int]] = set()
        creators: list[Field] = []
        for key, raw in raw_items(ds):
            tag = int(key)
            group, elem_no = tag >> 16, tag & 0xFFFF
            if group == 0x0002 or elem_no == 0x0000:
                del ds[key]  # file meta inside a dataset, group lengths: rebuilt or obsolete
                self.mutations += 1
                continue
            raw_vr = raw.VR if raw is not None else None
            if not group & 1 and self.step.untouched(tag, raw_vr):
                continue  # kept as is: never decoded, written back byte for byte
            field = Field(ds, key, element_vr(tag, raw_vr), raw, codec, path)
            if group & 1:
                if elem_no in PRIVATE_CREATOR_RANGE:
                    creators.append(field)
                else:
                    self.private(field, private_kept_blocks)
                continue
            self.element(field, depth, dummy_text, overlay_groups_removed)
        for creator in creators:
            if (creator.tag >> 16, creator.tag & 0xFF) not in private_kept_blocks:
                creator.remove()
                self.record(creator, "removed")
        if overlay_groups_removed:
            for key in [k for k in list(ds.keys()) if (int(k) >> 16) in overlay_groups_removed]:
                del ds[key]

    def private(self, field: Field, kept: set[tuple[int, int]]) -> None:
        group, elem_no = field.tag >> 16, field.tag & 0xFFFF
        block = elem_no >> 8
        if self.step._safe and block in PRIVATE_CREATOR_RANGE:
            creator_tag = BaseTag((group << 16) | block)
            creator = Field(field.ds, creator_tag, "LO", None, field.codec, field.path)
            creator.raw = field.ds.get_item(creator.tag)
            name = creator.values[0].strip().upper() if creator.raw and creator.values else ""
            if (name, group, elem_no & 0xFF) in self.step._safe:
                kept.add((group, block))
                self.record(field, "kept", original=_raw_bytes(field))
                return
        field.remove()
        self.record(field, "removed")

    def element(
        self, field: Field, depth: int, dummy_text: bool, overlay_groups_removed: set[int]
    ) -> None:
        step, vr = self.step, field.vr
        if step.verbatim and vr in TEXT_VRS:
            self.clean_text(field)
            return
        action = step.action(field.tag)
        if action is None:
            self.unlisted(field, depth, dummy_text)
            return
        code = action.code
        if code == "X":
            field.remove()
            if (field.tag & 0xFF00FFFF) == 0x60003000:
                overlay_groups_removed.add(field.tag >> 16)
            self.record(field, "removed")
        elif code == "Z":
            self.empty(field)
        elif code == "D":
            self.dummy(field, depth)
        elif code == "K":
            self.keep(field, depth, dummy_text)
        elif code == "C":
            self.clean(field, depth, dummy_text, action.option, overlay_groups_removed)
        elif code == "U":
            if vr == "SQ":
                self.sequence(field, depth, dummy_text)
            elif not step.keep_uids:
                self.remap_uids(field)
        else:  # pragma: no cover - the generator only writes the six codes
            raise DeidError(ErrorCode.INTERNAL_ERROR, f"unknown action {code!r}")

    # -- actions ----------------------------------------------------------------------------
    def sequence(self, field: Field, depth: int, dummy_text: bool) -> None:
        name = field.keyword or _tag_str(field.tag)
        prefix = f"{field.path}.{name}" if field.path else name
        raw, before = field.raw, self.changes()
        for index, item in enumerate(field.sequence()):
            self.dataset(
                item, f"{prefix}[{index}]", depth + 1, dummy_text=dummy_text, codec=field.codec
            )
        if self.changes() == before:
            restore_raw(field.ds, field.tag, raw)  # nothing changed inside: original bytes

    def changes(self) -> int:
        """A count that grows whenever the walk changes something."""
        return self.mutations + len(self.outcome.entities)

    def empty(self, field: Field) -> None:
        if field.vr == "PN" or field.keyword in ID_PREFIX:
            self.pseudonymize(field)
            return
        original = field.original
        if field.vr == "SQ":
            field.set(Sequence())
        elif field.vr in STRING_VRS:
            if not field.values:
                return
            field.set("")
        else:
            field.set(None)
        self.record(field, "emptied", original=original)

    def pseudonymize(self, field: Field) -> None:
        values = field.values
        if not values:
            return
        if field.vr == "PN":
            patient = field.keyword == "PatientName"
            new = [self.pseudo.name(v, patient=patient) for v in values]
            entity_type = "PERSON"
        else:
            prefix = ID_PREFIX.get(field.keyword, "IDN")
            new = [_fit(self.pseudo.identifier(v, prefix), field.vr) for v in values]
            entity_type = "ID"
        original = "\\".join(values)
        field.set(new)
        self.record(
            field, "replaced", original=original, replacement="\\".join(new),
            entity_type=entity_type,
        )  # fmt: skip

    def dummy(self, field: Field, depth: int) -> None:
        vr = field.vr
        if vr == "SQ":
            self.sequence(field, depth, dummy_text=True)
            return
        if vr == "PN" or field.keyword in ID_PREFIX:
            self.pseudonymize(field)
            return
        if vr == "UI":
            self.remap_uids(field)
            return
        original = field.original
        if vr in STRING_VRS and not field.values:
            return
        new: Any
        if vr in DUMMY_VALUES:
            new = DUMMY_VALUES[vr]
        elif vr in ("LT", "ST", "UT", "UR"):
            new = _fit(self.pseudo.token(str(original), 16), vr)
        elif vr in TEXT_VRS:
            new = [_fit(self.pseudo.token(v, 16), vr) for v in field.values]
        elif vr == "CS":
            new = "ANONYMIZED"
        elif vr in ("DS", "IS"):
            new = "0"
        elif vr in NUMERIC_VRS:
            new = 0
        elif vr in BINARY_VRS:
            new = bytes(len(original)) if isinstance(original, bytes) else b""
        else:
            new = None
        field.set(new)
        shown = "\\".join(new) if isinstance(new, list) else _safe_text(new)
        self.record(field, "replaced", original=original, replacement=shown)

    def keep(self, field: Field, depth: int, dummy_text: bool) -> None:
        if field.vr == "SQ":
            self.sequence(field, depth, dummy_text)
        elif field.vr == "AS":
            self.cap_ages(field)

    def clean(
        self,
        field: Field,
        depth: int,
        dummy_text: bool,
        option: str,
        overlay_groups_removed: set[int],
    ) -> None:
        vr = field.vr
        if vr == "SQ":
            self.sequence(field, depth, dummy_text)
        elif option == "retain_longitudinal_modified_dates":
            if vr in ("DA", "DT"):
                self.shift_dates(field)
        elif option == "clean_graphics":
            if vr in TEXT_VRS:
                self.clean_text(field)
            elif self.step.policy.pixels.mode == "off":
                # nobody will clean overlay or curve data: remove it (fail closed)
                field.remove()
                if (field.tag & 0xFF00FFFF) == 0x60003000:
                    overlay_groups_removed.add(field.tag >> 16)
                self.record(field, "removed")
            # else: overlay and curve data stay for the pixel step, which cleans them
        elif vr in TEXT_VRS:
            self.clean_text(field)
        elif vr == "AS":
            self.cap_ages(field)
        elif vr == "UI":
            self.remap_uids(field)

    def unlisted(self, field: Field, depth: int, dummy_text: bool) -> None:
        vr = field.vr
        if vr == "SQ":
            self.sequence(field, depth, dummy_text)
        elif vr == "UI":
            if not self.step.keep_uids:
                self.remap_uids(field)
        elif vr in ("DA", "DT"):
            self.dates_by_policy(field)
        elif vr == "AS":
            self.cap_ages(field)
        elif vr == "PN":
            self.pseudonymize(field)
        elif vr in TEXT_VRS:
            if dummy_text and field.keyword not in CODE_KEYWORDS:
                self.dummy(field, depth)
            else:
                self.clean_text(field)
        # numeric, coded (CS), AT, TM and binary values are kept

    def dates_by_policy(self, field: Field) -> None:
        mode = self.step._date_mode
        if mode == "shift":
            self.shift_dates(field)
        elif mode == "dummy" and field.values:
            original = field.original
            field.set(DUMMY_VALUES[field.vr])
            self.record(field, "replaced", original=original, replacement=DUMMY_VALUES[field.vr])

    def shift_dates(self, field: Field) -> None:
        values = field.values
        if not values:
            return
        shift = shift_da if field.vr == "DA" else shift_dt
        original = "\\".join(values)
        try:
            new = [shift(v, self.offset) for v in values]
        except ValueError:
            field.set("")
            self.record(field, "emptied", original=original)
            return
        field.set(new)
        self.outcome.dates_shifted = True
        self.record(field, "shifted", original=original, replacement="\\".join(new))

    def cap_ages(self, field: Field) -> None:
        values = field.values
        new = [cap_age(v) for v in values]
        if new != values:
            field.set(new)
            self.record(field, "replaced", original="\\".join(values), replacement="\\".join(new))

    def remap_uids(self, field: Field) -> None:
        values = field.values
        new = [v if is_well_known_uid(v) else self.pseudo.uid(v) for v in values]
        if new == values:
            return
        field.set(new)
        self.record(field, "replaced", original="\\".join(values), replacement="\\".join(new))

    # -- free text --------------------------------------------------------------------------
    def clean_text(self, field: Field) -> None:
        values = field.values
        if not values:
            return
        if self.detector is None:
            self.outcome.dummy_text = True
            self.dummy(field, 0)
            return
        self.outcome.text_cleaned = True
        vr = field.vr
        if vr in ("LT", "ST", "UT"):  # single-valued: a backslash is text here
            values = ["\\".join(values)]
        new_values: list[str] = []
        keyword = field.keyword
        device = keyword in DEVICE_KEYWORDS
        for value in values:
            cleaned, spans = self.detect(value, device=device)
            new_values.append(_fit(cleaned, vr))
            for span in spans:
                text = value[span.start : span.end]
                self.outcome.entities.append(
                    Entity(
                        location="header",
                        tag=_tag_str(field.tag),
                        keyword=keyword,
                        sequence_path=field.path,
                        entity_type=span.entity_type,
                        detector=span.detector,
                        action="cleaned",
                        confidence=float(span.confidence),
                        replacement=self.marker_for(span.entity_type),
                        value_hmac=self.pseudo.hmac(text),
                        start=span.start,
                        end=span.end,
                        raw_text=text if self.step.keep_raw_text else None,
                    )
                )
        if new_values != values:
            field.set(new_values)
            self.mutations += 1

    def marker_for(self, entity_type: str) -> str:
        return self.marker.replace("{type}", entity_type)

    def detect(self, text: str, *, device: bool = False) -> tuple[str, list[Any]]:
        """Return the text with PHI spans replaced by markers, and the spans (cached per record).

        ``device``: the text names equipment or software (see ``text_detect.detect``).
        """
        cached = self.cleaned.get((text, device))
        if cached is not None:
            return cached
        assert self.detector is not None
        found: list[Any] = list(self.detector.detect(text, device=device))
        if self.deny is not None:
            found.extend(
                DenySpan(start, end, kind, "denylist", 1.0)
                for start, end, kind in self.deny.spans(text)
            )
        spans = sorted(found, key=lambda s: (s.start, -s.end))
        pieces: list[str] = []
        kept: list[Any] = []
        cursor = 0
        for span in spans:
            if span.end <= cursor:
                continue  # inside a span already replaced
            start = max(span.start, cursor)
            pieces.append(text[cursor:start])
            pieces.append(self.marker_for(span.entity_type))
            cursor = span.end
            kept.append(span)
        pieces.append(text[cursor:])
        result = ("".join(pieces), kept)
        if len(self.cleaned) >= CLEANED_TEXTS:
            self.cleaned.clear()
        self.cleaned[(text, device)] = result
        return result


def _raw_bytes(field: Field) -> bytes:
    value = raw_value(field.ds, field.raw)
    return bytes(value) if isinstance(value, bytes | bytearray) else b""


def _safe_text(value: Any) -> str | None:
    if value is None or isinstance(value, bytes):
        return None
    return str(value)
