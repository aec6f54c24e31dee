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
   words, whatever the profile says. Every other element (dates, times, ages,
   UIDs, coded and numeric values, binary values, sequences, private and
   overlay attributes) follows the default rules below, so dates are still
   shifted, UIDs remapped, private tags removed.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary  # type: ignore[attr-defined]
from pydicom.valuerep import MAX_VALUE_LEN

from .dates import cap_age, shift_da, shift_dt
from .errors import DeidError, ErrorCode
from .policy import Policy
from .profile import ProfileAction, ProfileTable
from .pseudonyms import Pseudonymizer
from .results import Action, Detector, Entity
from .verify import DenyList

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
DUMMY_DATE = "19000101"
DUMMY_VALUES = {"DA": DUMMY_DATE, "DT": DUMMY_DATE + "000000", "TM": "000000", "AS": "000Y"}
TEXT_MAX_LEN = {**MAX_VALUE_LEN, "PN": 64, "UC": 2**32 - 2, "UT": 2**32 - 2, "UR": 2**32 - 2}
#: Well-known UIDs are kept: standard ones never identify a patient.
DICOM_UID_ROOT = "1.2.840.10008."

PRIVATE_CREATOR_RANGE = range(0x10, 0x100)


class SpanLike(Protocol):
    """What the header step reads from a text detector's span."""

    start: int
    end: int
    entity_type: str
    detector: str
    confidence: float


class TextDetectorLike(Protocol):
    """The part of :class:`dicomscrub.core.text_detect.TextDetector` the header step uses."""

    def detect(self, text: str, *, ocr: bool = False) -> list[Any]: ...


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
        self._passthrough_tags = frozenset(
            t for t in (tag_for_keyword(k) for k in PASSTHROUGH) if t is not None
        )
        following = {tag_for_keyword(k) for k in PROFILE_FOLLOWING}
        self._keep_tags = (
            self._passthrough_tags if self.verbatim else self._passthrough_tags - following
        )
        self._safe = _safe_private() if policy.options.retain_safe_private else frozenset()
        dates = policy.options
        self._date_mode = (
            "keep"
            if dates.retain_longitudinal_full_dates
            else "shift"
            if dates.retain_longitudinal_modified_dates
            else "dummy"
        )
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
        run = _Run(self, detector, self.pseudo.date_offset_days(patient_key), deny)
        try:
            run.dataset(ds, "", 0, dummy_text=False)
        except DeidError:
            raise
        except RecursionError:
            raise DeidError(ErrorCode.SEQUENCE_TOO_DEEP, "sequences nest too deeply") from None
        return run.outcome

    def action(self, tag: int) -> ProfileAction | None:
        """The table's action for a tag under this policy's options (cached)."""
        try:
            return self._actions[tag]
        except KeyError:
            found = self.table.action(tag, self._options)
            self._actions[tag] = found
            return found


class _Run:
    """The state of one dataset's walk."""

    def __init__(
        self,
        step: HeaderStep,
        detector: TextDetectorLike | None,
        offset_days: int,
        deny: DenyList | None = None,
    ) -> None:
        self.step = step
        self.detector = detector
        self.deny = deny
        self.offset = offset_days
        self.outcome = HeaderOutcome()
        self.pseudo = step.pseudo
        self.marker = step.policy.text.marker
        self.max_depth = step.policy.max_sequence_depth
        self._text_cache: dict[str, tuple[str, list[Any]]] = {}

    # -- entities ---------------------------------------------------------------------------
    def record(
        self,
        element: DataElement,
        path: str,
        action: Action,
        *,
        original: str | bytes,
        replacement: str | None = None,
        entity_type: str | None = None,
        detector: Detector = "profile",
        private: bool = False,
    ) -> None:
        raw = None
        if self.step.keep_raw_text:
            raw = original if isinstance(original, str) else None
        keyword = "" if private else (element.keyword or "")
        self.outcome.entities.append(
            Entity(
                location="header",
                tag=_tag_str(element.tag),
                keyword=keyword,
                sequence_path=path,
                entity_type=entity_type or entity_type_for(keyword, element.VR, private),
                detector=detector,
                action=action,
                value_hmac=self.pseudo.hmac(original),
                replacement=replacement,
                raw_text=raw,
            )
        )

    # -- walk -------------------------------------------------------------------------------
    def dataset(self, ds: Dataset, path: str, depth: int, *, dummy_text: bool) -> None:
        if depth > self.max_depth:
            raise DeidError(
                ErrorCode.SEQUENCE_TOO_DEEP,
                f"sequences nest deeper than the policy's limit of {self.max_depth}",
            )
        overlay_groups_removed: set[int] = set()
        private_kept_blocks: set[tuple[int, int]] = set()
        creators: list[int] = []
        for key in list(ds.keys()):
            tag = int(key)
            group, elem_no = tag >> 16, tag & 0xFFFF
            if group == 0x0002 or elem_no == 0x0000:
                del ds[tag]  # file meta inside a dataset, group lengths: rebuilt or obsolete
                continue
            if group & 1:
                if elem_no in PRIVATE_CREATOR_RANGE:
                    creators.append(tag)
                else:
                    self.private(ds, tag, path, private_kept_blocks)
                continue
            try:
                element = ds[tag]
            except Exception as exc:
                raise DeidError(
                    ErrorCode.INVALID_VALUE,
                    f"{_tag_str(tag)} could not be decoded ({type(exc).__name__})",
                ) from None
            self.element(ds, element, path, depth, dummy_text, overlay_groups_removed)
        for creator_tag in creators:
            if (creator_tag >> 16, creator_tag & 0xFF) not in private_kept_blocks:
                creator = ds[creator_tag]
                del ds[creator_tag]
                self.record(
                    creator, path, "removed", original=str(creator.value or ""), private=True
                )
        if overlay_groups_removed:
            for tag in [e.tag for e in ds if (e.tag >> 16) in overlay_groups_removed]:
                del ds[tag]

    def private(self, ds: Dataset, tag: int, path: str, kept: set[tuple[int, int]]) -> None:
        group, elem_no = tag >> 16, tag & 0xFFFF
        block = elem_no >> 8
        element = ds[tag]
        if self.step._safe and block in PRIVATE_CREATOR_RANGE:
            creator_tag = (group << 16) | block
            creator = ds.get(creator_tag)
            name = str(creator.value).strip().upper() if creator is not None else ""
            if (name, group, elem_no & 0xFF) in self.step._safe:
                kept.add((group, block))
                self.record(element, path, "kept", original=_raw_bytes(element), private=True)
                return
        del ds[tag]
        self.record(element, path, "removed", original=_raw_bytes(element), private=True)

    def element(
        self,
        ds: Dataset,
        element: DataElement,
        path: str,
        depth: int,
        dummy_text: bool,
        overlay_groups_removed: set[int],
    ) -> None:
        step = self.step
        tag, vr = int(element.tag), element.VR
        if tag in step._keep_tags:
            return
        if step.verbatim and vr in TEXT_VRS:
            self.clean_text(element, path)
            return
        action = step.action(tag)
        if action is None:
            self.unlisted(ds, element, path, depth, dummy_text)
            return
        code = action.code
        if code == "X":
            del ds[tag]
            if (tag & 0xFF00FFFF) == 0x60003000:
                overlay_groups_removed.add(tag >> 16)
            self.record(element, path, "removed", original=_original(element))
        elif code == "Z":
            self.empty(element, path)
        elif code == "D":
            self.dummy(element, path, depth)
        elif code == "K":
            self.keep(element, path, depth, dummy_text)
        elif code == "C":
            self.clean(element, path, depth, dummy_text, action.option)
        elif code == "U":
            if vr == "SQ":
                self.sequence(element, path, depth, dummy_text)
            elif not step._options.retain_uids:
                self.remap_uids(element, path)
        else:  # pragma: no cover - the generator only writes the six codes
            raise DeidError(ErrorCode.INTERNAL_ERROR, f"unknown action {code!r}")

    # -- actions ----------------------------------------------------------------------------
    def sequence(self, element: DataElement, path: str, depth: int, dummy_text: bool) -> None:
        name = element.keyword or _tag_str(int(element.tag))
        for index, item in enumerate(element.value or ()):
            item_path = f"{path}.{name}[{index}]" if path else f"{name}[{index}]"
            self.dataset(item, item_path, depth + 1, dummy_text=dummy_text)

    def empty(self, element: DataElement, path: str) -> None:
        vr, keyword = element.VR, element.keyword
        original = _original(element)
        if vr == "PN" or keyword in ID_PREFIX:
            self.pseudonymize(element, path)
            return
        if vr == "SQ":
            element.value = Sequence()
        elif vr in STRING_VRS:
            element.value = ""
        else:
            element.value = None
        self.record(element, path, "emptied", original=original)

    def pseudonymize(self, element: DataElement, path: str) -> None:
        values = _values(element)
        if not values:
            return
        if element.VR == "PN":
            patient = element.keyword == "PatientName"
            new = [self.pseudo.name(v, patient=patient) for v in values]
            entity_type = "PERSON"
        else:
            prefix = ID_PREFIX.get(element.keyword, "IDN")
            new = [_fit(self.pseudo.identifier(v, prefix), element.VR) for v in values]
            entity_type = "ID"
        _set_values(element, new)
        self.record(
            element,
            path,
            "replaced",
            original="\\".join(values),
            replacement="\\".join(new),
            entity_type=entity_type,
        )

    def dummy(self, element: DataElement, path: str, depth: int) -> None:
        vr = element.VR
        if vr == "SQ":
            self.sequence(element, path, depth, dummy_text=True)
            return
        if vr == "PN" or element.keyword in ID_PREFIX:
            self.pseudonymize(element, path)
            return
        if vr == "UI":
            self.remap_uids(element, path)
            return
        original = _original(element)
        if vr in DUMMY_VALUES:
            new: Any = DUMMY_VALUES[vr] if _values(element) else ""
        elif vr in TEXT_VRS:
            new = (
                "\\".join(_fit(self.pseudo.token(v, 16), vr) for v in _values(element))
                if vr not in ("LT", "ST", "UT")
                else _fit(self.pseudo.token(str(original), 16), vr)
            )
        elif vr == "CS":
            new = "ANONYMIZED" if _values(element) else ""
        elif vr in ("DS", "IS"):
            new = "0"
        elif vr in NUMERIC_VRS:
            new = 0
        elif vr in BINARY_VRS:
            new = bytes(len(element.value or b""))
        else:
            new = None
        element.value = new
        self.record(element, path, "replaced", original=original, replacement=_safe_text(new))

    def keep(self, element: DataElement, path: str, depth: int, dummy_text: bool) -> None:
        if element.VR == "SQ":
            self.sequence(element, path, depth, dummy_text)
        elif element.VR == "AS":
            self.cap_ages(element, path)

    def clean(
        self, element: DataElement, path: str, depth: int, dummy_text: bool, option: str
    ) -> None:
        vr = element.VR
        if vr == "SQ":
            self.sequence(element, path, depth, dummy_text)
        elif option == "retain_longitudinal_modified_dates":
            if vr in ("DA", "DT"):
                self.shift_dates(element, path)
        elif option == "clean_graphics":
            if vr in TEXT_VRS:
                self.clean_text(element, path)
            # overlay and curve data stay for the pixel step, which cleans them
        elif vr in TEXT_VRS:
            self.clean_text(element, path)
        elif vr == "AS":
            self.cap_ages(element, path)
        elif vr == "UI":
            self.remap_uids(element, path)

    def unlisted(
        self, ds: Dataset, element: DataElement, path: str, depth: int, dummy_text: bool
    ) -> None:
        vr = element.VR
        if vr == "SQ":
            self.sequence(element, path, depth, dummy_text)
        elif vr == "UI":
            if not self.step._options.retain_uids:
                self.remap_uids(element, path, only_unknown=True)
        elif vr in ("DA", "DT"):
            self.dates_by_policy(element, path)
        elif vr == "AS":
            self.cap_ages(element, path)
        elif vr == "PN":
            self.pseudonymize(element, path)
        elif vr in TEXT_VRS:
            if dummy_text and element.keyword not in CODE_KEYWORDS:
                self.dummy(element, path, depth)
            else:
                self.clean_text(element, path)
        # numeric, coded (CS), AT, TM and binary values are kept

    def dates_by_policy(self, element: DataElement, path: str) -> None:
        mode = self.step._date_mode
        if mode == "shift":
            self.shift_dates(element, path)
        elif mode == "dummy" and _values(element):
            original = _original(element)
            element.value = DUMMY_VALUES[element.VR]
            self.record(element, path, "replaced", original=original, replacement=element.value)

    def shift_dates(self, element: DataElement, path: str) -> None:
        values = _values(element)
        if not values:
            return
        shift = shift_da if element.VR == "DA" else shift_dt
        try:
            new = [shift(v, self.offset) for v in values]
        except ValueError:
            element.value = ""
            self.record(element, path, "emptied", original="\\".join(values))
            return
        _set_values(element, new)
        self.outcome.dates_shifted = True
        self.record(
            element, path, "shifted", original="\\".join(values), replacement="\\".join(new)
        )

    def cap_ages(self, element: DataElement, path: str) -> None:
        values = _values(element)
        new = [cap_age(v) for v in values]
        if new != values:
            _set_values(element, new)
            self.record(
                element, path, "replaced", original="\\".join(values), replacement="\\".join(new)
            )

    def remap_uids(self, element: DataElement, path: str, *, only_unknown: bool = True) -> None:
        values = _values(element)
        if not values:
            return
        new = [v if (only_unknown and is_well_known_uid(v)) else self.pseudo.uid(v) for v in values]
        if new == values:
            return
        _set_values(element, new)
        self.record(
            element, path, "replaced", original="\\".join(values), replacement="\\".join(new)
        )

    # -- free text --------------------------------------------------------------------------
    def clean_text(self, element: DataElement, path: str) -> None:
        values = _values(element)
        if not values:
            return
        if self.detector is None:
            self.outcome.dummy_text = True
            self.dummy(element, path, 0)
            return
        self.outcome.text_cleaned = True
        vr = element.VR
        if vr in ("LT", "ST", "UT"):  # single-valued: a backslash is text here
            values = ["\\".join(values)]
        new_values: list[str] = []
        for value in values:
            cleaned, spans = self.detect(value)
            new_values.append(_fit(cleaned, vr))
            for span in spans:
                text = value[span.start : span.end]
                self.outcome.entities.append(
                    Entity(
                        location="header",
                        tag=_tag_str(int(element.tag)),
                        keyword=element.keyword or "",
                        sequence_path=path,
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
            _set_values(element, new_values)

    def marker_for(self, entity_type: str) -> str:
        return self.marker.replace("{type}", entity_type)

    def detect(self, text: str) -> tuple[str, list[Any]]:
        """Return the text with PHI spans replaced by markers, and the spans (cached)."""
        cached = self._text_cache.get(text)
        if cached is not None:
            return cached
        assert self.detector is not None
        found: list[Any] = list(self.detector.detect(text))
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
        self._text_cache[text] = result
        return result


def _original(element: DataElement) -> str | bytes:
    value = element.value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Sequence):
        return f"<sequence of {len(value)} items>"
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _raw_bytes(element: DataElement) -> str | bytes:
    return _original(element)


def _safe_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return None
    return str(value)


def walk_strings(ds: Dataset) -> Iterable[tuple[str, DataElement]]:
    """Yield ``(sequence path, element)`` for every element at any depth, file meta excluded."""
    stack: list[tuple[Dataset, str]] = [(ds, "")]
    while stack:
        current, path = stack.pop()
        for element in current:
            if element.VR == "SQ":
                name = element.keyword or _tag_str(int(element.tag))
                for index, item in enumerate(element.value or ()):
                    stack.append((item, f"{path}.{name}[{index}]" if path else f"{name}[{index}]"))
            yield path, element


Cleaner = Callable[[str], tuple[str, list[Any]]]
