"""What the engine reports: entity records and per-file results.

An :class:`Entity` is one detected or acted-on item (a header attribute the
profile removed, a PHI span found in free text, a box masked in the pixels).
It never holds the original value: only a keyed HMAC of it and, when the
replacement is itself safe, the replacement.

``Entity.raw_text`` is the single exception, and it is in-memory only: it is
filled only when a caller asks for it (the drop-in API returns entity text to
its own caller), it is excluded from ``repr``, and :meth:`Entity.to_record`
(the only way into the audit) never includes it.

Examples
--------
>>> e = Entity(location="header", tag="(0010,0010)", keyword="PatientName",
...            entity_type="PERSON", detector="profile", action="replaced",
...            value_hmac="ab12", replacement="PAT-1234")
>>> e.to_record()["keyword"]
'PatientName'
>>> "raw_text" in e.to_record()
False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Location = Literal["header", "pixel"]
Detector = Literal["profile", "denylist", "pattern", "ner", "ocr", "region", "overlay"]
Action = Literal["removed", "emptied", "replaced", "shifted", "masked", "kept", "cleaned"]
Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Entity:
    """One detected or acted-on item.

    Attributes
    ----------
    location
        ``"header"`` or ``"pixel"``.
    tag
        The attribute tag as ``"(GGGG,EEEE)"``; for pixels, ``"(7FE0,0010)"``
        or the overlay data tag.
    keyword
        The DICOM keyword (``""`` for private or unknown tags).
    sequence_path
        Where the element sits: ``""`` at the top level, otherwise keywords
        with item indexes, e.g. ``"ReferencedStudySequence[0]"``.
    entity_type
        ``PERSON``, ``ID``, ``DATE``, ``TIME``, ``UID``, ``AGE``, ``ORG``,
        ``LOCATION``, ``PHONE``, ``EMAIL``, ``URL``, ``SSN``, ``TEXT``,
        ``PRIVATE``, ``OVERLAY`` or ``OTHER``.
    detector
        ``profile`` (the PS3.15 table), ``denylist`` (the record's own
        identifiers), ``pattern``, ``ner``, ``ocr``, ``region`` (a fixed
        region from the policy) or ``overlay``.
    action
        ``removed``, ``emptied``, ``replaced``, ``shifted``, ``masked``,
        ``cleaned`` (free text with PHI spans replaced) or ``kept``.
    confidence
        0..1.
    replacement
        The new value when it is itself safe to record (a pseudonym, a
        shifted date, a marker), else ``None``.
    value_hmac
        Keyed HMAC-SHA256 (hex) of the original value.
    frame, box
        For pixels: the frame index and the box ``(x, y, width, height)``.
    start, end
        For spans inside text: character offsets in the original value.
    raw_text
        The original text, only when the caller asked for it. Never audited,
        never logged.
    """

    location: Location
    tag: str
    keyword: str
    entity_type: str
    detector: Detector
    action: Action
    value_hmac: str
    sequence_path: str = ""
    confidence: float = 1.0
    replacement: str | None = None
    frame: int | None = None
    box: tuple[int, int, int, int] | None = None
    start: int | None = None
    end: int | None = None
    raw_text: str | None = field(default=None, repr=False, compare=False)

    def to_record(self) -> dict[str, Any]:
        """Return the audit row for this entity (without ``raw_text``)."""
        row = asdict(self)
        del row["raw_text"]
        if self.box is not None:
            row["box"] = list(self.box)
        return row


@dataclass
class FileResult:
    """The outcome for one input file.

    Attributes
    ----------
    source
        The input path or URL, as given.
    source_sha256
        SHA-256 of the input bytes ('' when the file could not be read).
    status
        ``ok``, ``failed`` or ``skipped``.
    output
        Where the de-identified file was written, or ``None``.
    error_code, error_message
        Set when ``status == "failed"``; the message holds no PHI.
    entities
        Every entity record for the file.
    frames
        Number of frames in the pixel data (0 when there is none).
    timings
        Seconds spent per step (``read``, ``header``, ``pixels``, ``encode``,
        ``write``, ``total``).
    uids
        The pseudonymized ``StudyInstanceUID``, ``SeriesInstanceUID`` and
        ``SOPInstanceUID`` of the output (safe; used for the output layout).
    modality
        The Modality of the input (a coded value, not PHI).
    pixels_changed
        Whether any stored pixel value was changed.
    """

    source: str
    source_sha256: str = ""
    status: Status = "ok"
    output: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    entities: list[Entity] = field(default_factory=list)
    frames: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)
    modality: str = ""
    pixels_changed: bool = False

    @property
    def header_entities(self) -> int:
        """Number of header entity records."""
        return sum(1 for e in self.entities if e.location == "header")

    @property
    def pixel_entities(self) -> int:
        """Number of pixel entity records."""
        return sum(1 for e in self.entities if e.location == "pixel")
