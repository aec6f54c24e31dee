"""The drop-in API: the reference product's base64 file request, answered by the engine.

Teams that call a hosted de-identification service send a request like::

    {"file": {"data": "<base64 of a .dcm>", "content_type": "application/dicom"},
     "entity_detection": {"return_entity": true}}

:func:`process_files_base64` takes that body (a ``dict``) and returns the body
of the reference product's response, computed by a dicomscrub
:class:`~dicomscrub.core.pipeline.Engine` with the same policy and secret as
every other entry point. No web framework is imported here: the HTTP service
in :mod:`dicomscrub.core.serve` is a thin shell around this function.

The response
------------
``processed_file``
    Base64 of the de-identified DICOM file.
``processed_text``
    The de-identified header as text: one line ``<path><keyword>: <value>`` per
    element with a character-string VR (AE, AS, CS, DA, DS, DT, IS, LO, LT, PN,
    SH, ST, TM, UC, UI, UR, UT) of the *output* dataset, top level and inside
    sequence items (``ReferencedStudySequence[0].ReferencedSOPInstanceUID``),
    in file order; file meta is not included. Multiple values are joined with
    ``\\`` as DICOM stores them.
``entities``
    One item per PHI item acted on (header attributes the profile removed,
    replaced or shifted, PHI spans cleaned out of free text, boxes masked in
    the pixels); attributes that were empty in the input are not listed. Each
    has ``text`` (the original text; omitted when ``return_entity`` is false),
    ``processed_text`` (the replacement: pseudonym, shifted date or marker;
    ``""`` for emptied attributes; the marker ``[TYPE]`` for removed
    attributes and masked boxes, which no text replaces), ``best_label`` and
    ``labels`` (label -> confidence; labels use the reference product's names
    where one fits, see :data:`LABELS`),
    ``location``, and dicomscrub's own ``entity_type``, ``detector`` and
    ``action``. ``location`` for a header entity holds ``tag``, ``attribute``
    (the keyword), ``sequence_path``, ``stt_idx``/``end_idx`` (character
    offsets inside the attribute's original value) and
    ``stt_idx_processed``/``end_idx_processed`` (offsets of the replacement in
    the response's ``processed_text``, ``null`` when the attribute is not in
    the output). For a pixel entity it holds ``frame`` (also as ``page``),
    ``box`` (``[x, y, width, height]`` in pixels) and ``x0``, ``x1``, ``y0``,
    ``y1`` (the box relative to the image size, as the reference product
    reports image boxes).
``entities_present``
    Whether any entity was found.
``languages_detected``
    ISO 639-1 code -> confidence, from lingua run over the free text of the
    input header (LO, LT, SH, ST, UT, UC values) and the burned-in words that
    were found.
``dicomscrub``
    Extension: policy name and hash, frame count, whether pixels changed, and
    entity counts.

Errors raise :class:`ApiError` with an HTTP status, a stable ``error_code``
and a message that never contains a value from the request.

Examples
--------
>>> try:
...     parse_request({"file": {"data": "", "content_type": "image/png"}})
... except ApiError as err:
...     print(err.status, err.to_body()["error_code"])
415 unsupported_content_type
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from io import BytesIO
from typing import TYPE_CHECKING, Any

import pydicom
from pydantic import BaseModel, ConfigDict, ValidationError
from pydicom.multival import MultiValue

from .errors import ConfigurationError, ErrorCode
from .results import Entity, FileResult

if TYPE_CHECKING:
    from lingua import LanguageDetector

    from .pipeline import Engine

DICOM_CONTENT_TYPE = "application/dicom"

#: Our entity types -> the reference product's label names (types without an
#: equivalent keep their own name).
LABELS: dict[str, str] = {
    "PERSON": "NAME",
    "ORG": "ORGANIZATION",
    "LOCATION": "LOCATION",
    "PHONE": "PHONE_NUMBER",
    "EMAIL": "EMAIL_ADDRESS",
    "URL": "URL",
    "SSN": "SSN",
    "ID": "NUMERICAL_PII",
    "DATE": "DATE",
    "TIME": "TIME",
    "AGE": "AGE",
}

#: Character-string VRs: their elements make up ``processed_text``.
TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC"}
    | {"UI", "UR", "UT"}
)
#: VRs whose values are prose worth a language guess.
PROSE_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC"})

#: Engine error codes caused by the uploaded file (HTTP 422); the others are
#: the service's own failures (HTTP 500).
INPUT_ERRORS = frozenset(
    {
        ErrorCode.EMPTY_FILE,
        ErrorCode.NOT_DICOM,
        ErrorCode.TRUNCATED,
        ErrorCode.INVALID_VALUE,
        ErrorCode.SEQUENCE_TOO_DEEP,
        ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX,
        ErrorCode.TOO_MANY_PIXELS,
        ErrorCode.DECODE_FAILED,
    }
)

_WHITESPACE = re.compile(r"\s+")


class ApiError(Exception):
    """A request that cannot be answered with a processed file.

    Parameters
    ----------
    status
        The HTTP status the service answers with.
    code
        A stable machine-readable code (an :class:`ErrorCode` value for engine
        failures).
    message
        A human-readable reason without any value from the request.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def to_body(self) -> dict[str, Any]:
        """Return the JSON error body: ``{"detail": ..., "error_code": ...}``."""
        return {"detail": self.message, "error_code": self.code}


# --- request -------------------------------------------------------------------------------------
class _Lenient(BaseModel):
    # Options of the reference product that dicomscrub does not use (accuracy, entity_types,
    # filter, pdf_options, ocr_options, project_id, ...) are accepted and ignored: the policy
    # decides what is removed, and ignoring a narrowing option only ever removes more.
    model_config = ConfigDict(extra="ignore")


class FileData(_Lenient):
    """The ``file`` object: base64 ``data`` and its ``content_type``."""

    data: str
    content_type: str


class EntityDetection(_Lenient):
    """The ``entity_detection`` object; only ``return_entity`` changes the answer."""

    return_entity: bool = True


class FilesBase64Request(_Lenient):
    """The body of ``POST /process/files/base64``."""

    file: FileData
    entity_detection: EntityDetection = EntityDetection()


def parse_request(body: Any) -> FilesBase64Request:
    """Validate a request body; raise :class:`ApiError` (422 or 415) when it is wrong.

    Examples
    --------
    >>> req = parse_request({"file": {"data": "AAAA", "content_type": "application/dicom"}})
    >>> req.entity_detection.return_entity
    True
    >>> try:
    ...     parse_request({"file": {"data": 1}})
    ... except ApiError as err:
    ...     print(err.status, err.message)
    422 file.data: Input should be a valid string; file.content_type: Field required
    """
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", "the request body must be a JSON object")
    try:
        request = FilesBase64Request.model_validate(body)
    except ValidationError as exc:
        # Only locations and messages: pydantic's str() would echo the input values.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ApiError(422, "invalid_request", problems) from None
    media_type = request.file.content_type.split(";")[0].strip().lower()
    if media_type != DICOM_CONTENT_TYPE:
        raise ApiError(
            415,
            "unsupported_content_type",
            f"file.content_type must be {DICOM_CONTENT_TYPE!r}: this service de-identifies "
            "DICOM files only",
        )
    return request


def decode_base64(data: str) -> bytes:
    """Decode strict base64 (line breaks allowed); raise :class:`ApiError` 400 otherwise.

    Examples
    --------
    >>> decode_base64("RElDTQ==\\n")
    b'DICM'
    >>> try:
    ...     decode_base64("not base64!")
    ... except ApiError as err:
    ...     print(err.status, err.code)
    400 invalid_base64
    """
    try:
        return base64.b64decode(_WHITESPACE.sub("", data), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "invalid_base64", "file.data is not valid base64") from None


# --- languages -----------------------------------------------------------------------------------
class LanguageIdentifier:
    """Language identification with lingua, built once per process and shared.

    Parameters
    ----------
    languages
        ISO 639-1 codes to choose from; ``None`` means every language lingua
        knows (about 75; the models take about 1 GB of memory and several
        seconds to load, so name the languages you expect when that matters).
    min_confidence
        Languages below this confidence are not reported.
    max_languages
        At most this many languages are reported, most likely first.

    Examples
    --------
    >>> ident = LanguageIdentifier(["en", "de"])
    >>> ident.detect("The patient was examined at the hospital yesterday.")["en"] > 0.9
    True
    >>> ident.detect("")
    {}
    """

    def __init__(
        self,
        languages: Sequence[str] | None = None,
        *,
        min_confidence: float = 0.05,
        max_languages: int = 3,
    ) -> None:
        self.languages = tuple(code.strip().lower() for code in languages) if languages else None
        self.min_confidence = min_confidence
        self.max_languages = max_languages
        self._detector: LanguageDetector | None = None
        self._lock = threading.Lock()

    def _build(self) -> LanguageDetector:
        try:
            from lingua import IsoCode639_1, LanguageDetectorBuilder
        except ImportError:
            raise ConfigurationError(
                "language detection needs the 'serve' extra: pip install 'dicomscrub[serve]'"
            ) from None
        if self.languages is None:
            return LanguageDetectorBuilder.from_all_languages().build()
        try:
            codes = [IsoCode639_1.from_str(code) for code in self.languages]
        except ValueError:
            raise ConfigurationError(
                f"unknown ISO 639-1 language code in {','.join(self.languages)}"
            ) from None
        return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()

    @property
    def detector(self) -> LanguageDetector:
        """The lingua detector (built on first use)."""
        with self._lock:
            if self._detector is None:
                self._detector = self._build()
            return self._detector

    def warm_up(self) -> None:
        """Build the detector and load its models now (lingua loads them lazily)."""
        self.detect("Loading the language models takes a few seconds.")

    def detect(self, text: str) -> dict[str, float]:
        """Return ISO 639-1 code -> confidence for ``text`` (empty when there is no text)."""
        if not text.strip():
            return {}
        values = self.detector.compute_language_confidence_values(text)
        found: dict[str, float] = {}
        for value in values[: self.max_languages]:
            if value.value < self.min_confidence:
                break
            found[value.language.iso_code_639_1.name.lower()] = round(value.value, 4)
        return found


_default_identifier: LanguageIdentifier | None = None


def default_language_identifier() -> LanguageIdentifier:
    """The process-wide identifier over every language (built on first use)."""
    global _default_identifier
    if _default_identifier is None:
        _default_identifier = LanguageIdentifier()
    return _default_identifier


# --- the request ---------------------------------------------------------------------------------
def process_files_base64(
    body: Any,
    engine: Engine,
    *,
    languages: LanguageIdentifier | None = None,
) -> dict[str, Any]:
    """Answer a reference-product base64 file request with the dicomscrub engine.

    Parameters
    ----------
    body
        The decoded JSON request body.
    engine
        The engine to de-identify with; built with ``keep_raw_text=True`` so
        that entity text can be returned (it is returned only when the request
        asks for it, and never logged).
    languages
        The language identifier; the process-wide one over every language
        when ``None``.

    Returns
    -------
    dict
        The response body (see the module docstring).

    Raises
    ------
    ApiError
        415 wrong ``content_type``, 400 invalid base64, 422 invalid request or
        a file the engine rejects (``not_dicom``, ``truncated``, ...), 500 when
        the engine could not finish a valid file.

    Examples
    --------
    >>> from dicomscrub.core.pipeline import Engine
    >>> from pydicom.data import get_testdata_file
    >>> engine = Engine(secret="doctest-secret", keep_raw_text=True)
    >>> data = open(get_testdata_file("MR_small.dcm"), "rb").read()
    >>> body = {"file": {"data": base64.b64encode(data).decode(),
    ...                  "content_type": "application/dicom"},
    ...         "entity_detection": {"return_entity": True}}
    >>> answer = process_files_base64(body, engine, languages=LanguageIdentifier(["en", "de"]))
    >>> redacted = pydicom.dcmread(BytesIO(base64.b64decode(answer["processed_file"])))
    >>> str(redacted.PatientName) != "CompressedSamples^MR1"
    True
    >>> answer["entities_present"]
    True
    """
    request = parse_request(body)
    data = decode_base64(request.file.data)
    output, result = engine.process_bytes(data)
    if output is None or result.status != "ok":
        raise _engine_error(result)
    return build_response(
        data,
        output,
        result,
        marker=engine.policy.text.marker,
        policy_name=engine.policy.name,
        policy_hash=engine.policy_hash,
        return_entity=request.entity_detection.return_entity,
        languages=languages or default_language_identifier(),
    )


def _engine_error(result: FileResult) -> ApiError:
    code = result.error_code or ErrorCode.INTERNAL_ERROR.value
    message = result.error_message or "the file could not be de-identified"
    status = 422 if code in {c.value for c in INPUT_ERRORS} else 500
    return ApiError(status, code, message)


def build_response(
    original: bytes,
    output: bytes,
    result: FileResult,
    *,
    marker: str,
    policy_name: str,
    policy_hash: str,
    return_entity: bool,
    languages: LanguageIdentifier,
) -> dict[str, Any]:
    """Shape an engine result as the reference product's response body."""
    with warnings.catch_warnings():  # pydicom's value warnings can quote the value
        warnings.simplefilter("ignore")
        source_ds = pydicom.dcmread(BytesIO(original), stop_before_pixels=True, force=True)
        output_ds = pydicom.dcmread(BytesIO(output), stop_before_pixels=True)
        processed = ProcessedText.from_dataset(output_ds)
        prose = _prose_values(source_ds)
    rows = int(output_ds.get("Rows", 0) or 0)
    columns = int(output_ds.get("Columns", 0) or 0)

    reported = [e for e in result.entities if _is_reported(e)]
    processed_spans = processed.locate(reported, marker)
    entities = []
    for entity in reported:
        replacement = _replacement(entity, marker)
        label = LABELS.get(entity.entity_type, entity.entity_type)
        item: dict[str, Any] = {}
        if return_entity:
            item["text"] = entity.raw_text
        item["processed_text"] = replacement
        item["best_label"] = label
        item["labels"] = {label: round(entity.confidence, 4)}
        if entity.location == "pixel":
            item["location"] = _pixel_location(entity, rows, columns)
        else:
            item["location"] = _header_location(entity, processed_spans.get(id(entity)))
        item["entity_type"] = entity.entity_type
        item["detector"] = entity.detector
        item["action"] = entity.action
        entities.append(item)

    pixel_words = [e.raw_text for e in reported if e.location == "pixel" and e.raw_text]
    found_text = "\n".join([*prose, *pixel_words])
    return {
        "processed_file": base64.b64encode(output).decode("ascii"),
        "processed_text": processed.text,
        "entities": entities,
        "entities_present": bool(entities),
        "languages_detected": languages.detect(found_text),
        "dicomscrub": {
            "policy": policy_name,
            "policy_hash": policy_hash,
            "frames": result.frames,
            "pixels_changed": result.pixels_changed,
            "header_entities": sum(1 for e in reported if e.location == "header"),
            "pixel_entities": sum(1 for e in reported if e.location == "pixel"),
        },
    }


def _is_reported(entity: Entity) -> bool:
    """Acted-on items, without attributes that were empty in the input."""
    if entity.action == "kept":
        return False
    return not (entity.location == "header" and entity.raw_text == "")


def _replacement(entity: Entity, marker: str) -> str:
    if entity.replacement is not None:
        return entity.replacement
    if entity.action == "emptied":
        return ""
    return marker.replace("{type}", entity.entity_type)


def _header_location(entity: Entity, processed: tuple[int, int] | None) -> dict[str, Any]:
    start, end = entity.start, entity.end
    if start is None and entity.raw_text is not None:
        start, end = 0, len(entity.raw_text)
    return {
        "tag": entity.tag,
        "attribute": entity.keyword or entity.tag,
        "sequence_path": entity.sequence_path,
        "stt_idx": start,
        "end_idx": end,
        "stt_idx_processed": processed[0] if processed else None,
        "end_idx_processed": processed[1] if processed else None,
    }


def _pixel_location(entity: Entity, rows: int, columns: int) -> dict[str, Any]:
    location: dict[str, Any] = {"tag": entity.tag, "frame": entity.frame, "page": entity.frame}
    if entity.box is not None:
        x, y, width, height = entity.box
        location["box"] = [x, y, width, height]
        if rows > 0 and columns > 0:
            location["x0"] = _relative(x, columns)
            location["x1"] = _relative(x + width, columns)
            location["y0"] = _relative(y, rows)
            location["y1"] = _relative(y + height, rows)
    return location


def _relative(value: int, size: int) -> float:
    return round(min(max(value / size, 0.0), 1.0), 5)


# --- header text ---------------------------------------------------------------------------------
def element_text(value: Any) -> str:
    """The text of a character-string element value, multiple values joined with ``\\``.

    Examples
    --------
    >>> element_text(MultiValue(str, ["ORIGINAL", "PRIMARY"]))
    'ORIGINAL\\\\PRIMARY'
    >>> element_text(None)
    ''
    """
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(element_text(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def iter_text_elements(
    ds: pydicom.Dataset, path: str = ""
) -> Iterator[tuple[str, str, str, str, str]]:
    """Yield ``(sequence_path, tag, keyword, vr, value)`` for every character-string element.

    ``sequence_path`` uses the engine's notation: keywords with item indexes,
    joined by dots (``""`` at the top level).

    Examples
    --------
    >>> ds = pydicom.Dataset()
    >>> ds.PatientName = "DOE^JANE"
    >>> ref = pydicom.Dataset()
    >>> ref.ReferencedSOPInstanceUID = "1.2.3"
    >>> ds.ReferencedStudySequence = [ref]
    >>> for row in iter_text_elements(ds):
    ...     print(row)
    ('ReferencedStudySequence[0]', '(0008,1155)', 'ReferencedSOPInstanceUID', 'UI', '1.2.3')
    ('', '(0010,0010)', 'PatientName', 'PN', 'DOE^JANE')
    """
    for elem in ds:
        tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            name = elem.keyword or tag
            for index, item in enumerate(elem.value or []):
                item_path = f"{path}.{name}[{index}]" if path else f"{name}[{index}]"
                yield from iter_text_elements(item, item_path)
        elif elem.VR in TEXT_VRS:
            yield path, tag, elem.keyword, elem.VR, element_text(elem.value)


def _prose_values(ds: pydicom.Dataset) -> list[str]:
    seen: dict[str, None] = {}
    for _path, _tag, _keyword, vr, value in iter_text_elements(ds):
        if vr in PROSE_VRS and value.strip():
            seen.setdefault(value.strip(), None)
    return list(seen)


class ProcessedText:
    """The de-identified header as text, with where each element's value sits in it.

    Examples
    --------
    >>> ds = pydicom.Dataset()
    >>> ds.PatientName = "PAT-1234"
    >>> ds.StudyDescription = "CT HEAD [PERSON]"
    >>> pt = ProcessedText.from_dataset(ds)
    >>> print(pt.text)
    StudyDescription: CT HEAD [PERSON]
    PatientName: PAT-1234
    >>> start, value = pt.values[("", "(0010,0010)")]
    >>> pt.text[start : start + len(value)]
    'PAT-1234'
    """

    def __init__(self, text: str, values: dict[tuple[str, str], tuple[int, str]]) -> None:
        self.text = text
        self.values = values

    @classmethod
    def from_dataset(cls, ds: pydicom.Dataset) -> ProcessedText:
        """Render every character-string element of ``ds`` as ``<path><keyword>: <value>``."""
        lines: list[str] = []
        values: dict[tuple[str, str], tuple[int, str]] = {}
        offset = 0
        for path, tag, keyword, _vr, value in iter_text_elements(ds):
            prefix = f"{path}.{keyword or tag}: " if path else f"{keyword or tag}: "
            values[(path, tag)] = (offset + len(prefix), value)
            line = prefix + value
            lines.append(line)
            offset += len(line) + 1
        return cls("\n".join(lines), values)

    def locate(self, entities: Sequence[Entity], marker: str) -> dict[int, tuple[int, int]]:
        """Return ``id(entity) -> (start, end)``: where each header replacement is in the text.

        A replacement is located only where the output value really holds it;
        entities of removed attributes are absent from the result.
        """
        spans: dict[tuple[str, str], list[Entity]] = {}
        found: dict[int, tuple[int, int]] = {}
        for entity in entities:
            if entity.location != "header":
                continue
            key = (entity.sequence_path, entity.tag)
            if key not in self.values:
                continue
            if entity.start is not None and entity.end is not None:
                spans.setdefault(key, []).append(entity)
                continue
            offset, value = self.values[key]
            if value == _replacement(entity, marker):
                found[id(entity)] = (offset, offset + len(value))
        for key, members in spans.items():
            offset, value = self.values[key]
            shift = 0
            for entity in sorted(members, key=lambda e: (e.start or 0, e.end or 0)):
                original_start, original_end = entity.start or 0, entity.end or 0
                replacement = _replacement(entity, marker)
                start = original_start + shift
                shift += len(replacement) - (original_end - original_start)
                if value[start : start + len(replacement)] == replacement:
                    found[id(entity)] = (offset + start, offset + start + len(replacement))
        return found
