"""The per-file pipeline: read -> pixels -> header -> encode -> write -> verify.

:class:`Engine` holds one policy and one secret and de-identifies datasets,
bytes and files; :func:`redact_path` is the ``dicomscrub redact`` command.

Order of steps for one file: the record's identifiers (deny-list, patient key
for the date offset, original UIDs) are taken from the *original* dataset;
then the pixel step (when ``policy.pixels.mode != "off"`` and the file has
pixel data) sees the original header; then the header step; then the file
meta is rebuilt (preamble zeroed) and the de-identification attributes are
set; the bytes are encoded, re-read and checked for residual identifiers
before anything is written.

A file that cannot be fully de-identified is never written: the result is a
failed :class:`~dicomscrub.core.results.FileResult` with an
:class:`~dicomscrub.core.errors.ErrorCode` and a message without PHI.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> engine = Engine({"pixels": {"mode": "off"}}, secret="doctest-secret")
>>> data = open(get_testdata_file("CT_small.dcm"), "rb").read()
>>> out, result = engine.process_bytes(data)
>>> result.status, result.uids["StudyInstanceUID"].startswith("2.25.")
('ok', True)
>>> _, bad = engine.process_bytes(b"not dicom")
>>> bad.status, bad.error_code
('failed', 'not_dicom')
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from . import __version__
from .errors import ConfigurationError, DeidError, ErrorCode, is_library_failure
from .header import HeaderOutcome, HeaderStep, is_well_known_uid
from .policy import Policy
from .profile import ProfileTable
from .pseudonyms import DEFAULT_SECRET_ENV, Pseudonymizer
from .read import PIXEL_TAGS, read_dataset, text_value
from .rescan import input_identifiers, scan_file
from .results import Entity, FileResult
from .verify import DenyList, identifying_elements
from .write import (
    Parts,
    element_bytes,
    encode_parts,
    original_spans,
    read_bytes,
    same_location,
    write_verified,
)

log = logging.getLogger(__name__)

IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["dicomscrub"])  # the same in every process
IMPLEMENTATION_VERSION_NAME = f"DICOMSCRUB_{__version__}"[:16]
#: The instance UIDs a result reports (tag, keyword).
INSTANCE_UIDS = (
    (0x0020000D, "StudyInstanceUID"),
    (0x0020000E, "SeriesInstanceUID"),
    (0x00080018, "SOPInstanceUID"),
)
#: Values longer than this stay in the input (output) bytes while a file is parsed.
DEFER_SIZE = 1 << 16

#: CID 7050 De-identification Method codes.
CID_7050 = {
    "113100": "Basic Application Confidentiality Profile",
    "113101": "Clean Pixel Data Option",
    "113103": "Clean Graphics Option",
    "113104": "Clean Structured Content Option",
    "113105": "Clean Descriptors Option",
    "113106": "Retain Longitudinal Temporal Information Full Dates Option",
    "113107": "Retain Longitudinal Temporal Information Modified Dates Option",
    "113108": "Retain Patient Characteristics Option",
    "113109": "Retain Device Identity Option",
    "113110": "Retain UIDs Option",
    "113111": "Retain Safe Private Option",
    "113112": "Retain Institution Identity Option",
}
_OPTION_CODES = (
    ("clean_graphics", "113103"),
    ("clean_structured_content", "113104"),
    ("clean_descriptors", "113105"),
    ("retain_patient_characteristics", "113108"),
    ("retain_device_identity", "113109"),
    ("retain_uids", "113110"),
    ("retain_safe_private", "113111"),
    ("retain_institution_identity", "113112"),
)


@dataclass
class Deidentified:
    """The result of :meth:`Engine.deidentify`.

    Attributes
    ----------
    dataset
        The de-identified dataset (the same object that was passed in).
    entities
        Header and pixel entity records.
    pixels_changed
        Whether any stored pixel value changed.
    frames
        Number of frames (0 without pixel data).
    uids
        Pseudonymized Study, Series and SOP Instance UIDs.
    deny
        The original record's identifiers, compiled (for verification; in memory only).
    original_uids
        The original instance UIDs (for verification; in memory only).
    """

    dataset: Dataset
    entities: list[Entity]
    pixels_changed: bool
    frames: int
    uids: dict[str, str]
    modality: str = ""
    deny: DenyList = field(default_factory=lambda: DenyList(None, None), repr=False)
    original_uids: list[str] = field(default_factory=list, repr=False)


class _SuppressValues(logging.Filter):
    """Keep pydicom's log free of values: its warnings quote element values (PHI).

    Warnings are dropped (the engine reports unusable values itself, as error codes);
    errors are kept with a PHI-free message.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return False
        record.msg = "pydicom reported an error with an element value (details suppressed)"
        record.args = ()
        return True


_PYDICOM_FILTER = _SuppressValues()


@dataclass(frozen=True)
class _Record:
    """What follows from a record's identifying values (shared by the files of a series)."""

    identifiers: Any  # text_detect.RecordIdentifiers, or None without the text detector
    deny: DenyList
    detector: Any  # text_detect.TextDetector for these identifiers, or None


_RECORD_CACHE_SIZE = 64


def _text_detect() -> Any:
    """The text detector module, or None when it cannot be imported."""
    try:
        from . import text_detect

        return text_detect
    except ImportError:
        return None


class Engine:
    """De-identify DICOM datasets, bytes and files under one policy and secret.

    Parameters
    ----------
    policy
        A :class:`Policy`, a built-in name, a YAML path, a dict or ``None`` (default).
    secret
        The pseudonymization key. ``None`` raises :class:`ConfigurationError`; use
        :meth:`from_env` to read it from the environment.
    keep_raw_text
        Fill ``Entity.raw_text`` with the original text (in memory only).

    Examples
    --------
    >>> engine = Engine("default", secret="s")
    >>> engine.policy.name, len(engine.policy_hash)
    ('default', 16)
    """

    def __init__(
        self,
        policy: Policy | str | dict[str, Any] | None = None,
        secret: str | bytes | None = None,
        *,
        keep_raw_text: bool = False,
    ) -> None:
        if secret is None or secret in ("", b""):
            raise ConfigurationError(
                "no pseudonymization secret given: pass secret=..., or use Engine.from_env() "
                f"with the environment variable {DEFAULT_SECRET_ENV} set"
            )
        self.policy: Policy = Policy.load(policy)
        self.policy_hash: str = self.policy.policy_hash()
        self.keep_raw_text = keep_raw_text
        self._pseudo = Pseudonymizer(secret)
        self._header = HeaderStep(
            self.policy, self._pseudo, ProfileTable.load(), keep_raw_text=keep_raw_text
        )
        self._base_detector: Any = None
        self._detector_error: str | None = None
        self._records: OrderedDict[tuple[Any, ...], _Record] = OrderedDict()
        if not self.policy.debug_log_phi:
            pydicom_log = logging.getLogger("pydicom")
            if _PYDICOM_FILTER not in pydicom_log.filters:
                pydicom_log.addFilter(_PYDICOM_FILTER)

    @classmethod
    def from_env(
        cls,
        policy: Policy | str | dict[str, Any] | None = None,
        *,
        secret_env: str = DEFAULT_SECRET_ENV,
        ephemeral_secret: bool = False,
        keep_raw_text: bool = False,
    ) -> Engine:
        """Build an engine whose secret comes from the environment variable ``secret_env``.

        Without it, raise :class:`ConfigurationError` unless ``ephemeral_secret`` is
        true, which uses a random per-run key (with a warning: pseudonyms then match
        no other run).
        """
        value = os.environ.get(secret_env, "")
        if not value:
            if not ephemeral_secret:
                raise ConfigurationError(
                    f"no pseudonymization secret: set the environment variable {secret_env} "
                    "to a long random string (the same one for every run whose pseudonyms "
                    "must match), or pass --ephemeral-secret (ephemeral_secret=True) for a "
                    "throwaway per-run key"
                )
            warnings.warn(
                "dicomscrub: using a throwaway per-run secret; pseudonyms (UIDs, IDs, names, "
                "date offsets) will not match those of any other run",
                UserWarning,
                stacklevel=2,
            )
            log.warning("using a throwaway per-run secret: pseudonyms will not match any other run")
            value = os.urandom(32).hex()
        return cls(policy, value, keep_raw_text=keep_raw_text)

    # -- pickling for worker processes: the heavy detector is rebuilt lazily ------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_base_detector"] = None
        state["_records"] = OrderedDict()
        return state

    @property
    def pseudonymizer(self) -> Pseudonymizer:
        """The keyed pseudonymizer (``.hmac(value)`` gives audit HMACs)."""
        return self._pseudo

    # -- the record's identifiers and the text detector ------------------------------------------
    def _record(self, ds: Dataset) -> _Record:
        """Identifiers, deny-list and detector of ``ds``, cached by its identifying values.

        One pass reads the identifying elements from the raw bytes; everything built
        from them (the detector's matchers, the deny-list) is kept in a small LRU,
        so the other files of a patient or series reuse it.
        """
        elements = getattr(ds, "_dicomscrub_identifying", None)
        if elements is None:
            elements = identifying_elements(ds)
        found = self._records.get(elements)
        if found is not None:
            self._records.move_to_end(elements)
            return found
        module = _text_detect()
        identifiers = None if module is None else module.RecordIdentifiers.from_elements(elements)
        extra = identifiers.deny_values() if identifiers is not None else ()
        found = _Record(
            identifiers, DenyList.from_elements(elements, extra), self._detector_for(identifiers)
        )
        self._records[elements] = found
        while len(self._records) > _RECORD_CACHE_SIZE:
            self._records.popitem(last=False)
        return found

    def _detector_for(self, identifiers: Any) -> Any:
        module = _text_detect()
        if module is None:
            if self._detector_error is None:
                self._detector_error = "dicomscrub.core.text_detect is not available"
                log.warning(
                    "the text detector is not available: free text is replaced by dummy "
                    "values instead of being cleaned"
                )
            return None
        if self._base_detector is None:
            self._base_detector = module.TextDetector(self.policy.text)
        return self._base_detector.with_identifiers(identifiers)

    # -- in memory -------------------------------------------------------------------------------
    def deidentify(self, ds: Dataset) -> Deidentified:
        """De-identify ``ds`` in place and return it with its entity records.

        Raises
        ------
        DeidError
            When the dataset cannot be fully de-identified.
        """
        original_uids = [text_value(ds, tag) for tag, _ in INSTANCE_UIDS]
        record = self._record(ds)  # string elements only: numbers and pixels stay encoded
        deny, detector = record.deny, record.detector
        patient_key = patient_key_of(ds)
        modality = text_value(ds, 0x00080060)
        has_pixels = any(tag in ds for tag in PIXEL_TAGS)
        frames = _frames(ds) if has_pixels else 0
        entities: list[Entity] = []
        pixels_changed = False
        pixels_ran = False
        if self.policy.pixels.mode != "off" and has_pixels:
            outcome = self._run_pixels(ds, detector)
            pixels_ran = True
            entities.extend(outcome.entities)
            pixels_changed = bool(outcome.changed)
            frames = int(getattr(outcome, "frames", frames) or frames)
        header = self._header.run(ds, patient_key=patient_key, detector=detector, deny=deny)
        entities[:0] = header.entities
        self._mark(ds, header, pixels_ran)
        _rebuild_file_meta(ds, fallback_uid=self._pseudo.uid("no-sop-instance:" + patient_key))
        uids = {keyword: text_value(ds, tag) for tag, keyword in INSTANCE_UIDS}
        return Deidentified(
            dataset=ds,
            entities=entities,
            pixels_changed=pixels_changed,
            frames=frames,
            uids=uids,
            modality=modality,
            deny=deny,
            # a well-known UID (the standard colour palettes' SOPInstanceUID) is kept
            original_uids=[u for u in original_uids if u and not is_well_known_uid(u)],
        )

    def _run_pixels(self, ds: Dataset, detector: Any) -> Any:
        try:
            from .pixels import redact_pixels
        except ImportError:
            raise DeidError(
                ErrorCode.OCR_UNAVAILABLE,
                "the pixel step (dicomscrub.core.pixels) cannot be loaded; set "
                "pixels.mode: off for header-only de-identification",
            ) from None
        if detector is None:
            raise DeidError(
                ErrorCode.OCR_UNAVAILABLE,
                "the text detector needed to classify burned-in text cannot be loaded",
            )
        return redact_pixels(
            ds,
            detector=detector,
            policy=self.policy,
            hmac=self._pseudo.hmac,
            keep_raw_text=self.keep_raw_text,
        )

    def _mark(self, ds: Dataset, header: HeaderOutcome, pixels_ran: bool) -> None:
        """Set PatientIdentityRemoved, DeidentificationMethod(+CodeSequence), temporal flag."""
        options = self.policy.options
        codes = ["113100"]
        if pixels_ran:
            codes.append("113101")
        for option, code in _OPTION_CODES:
            if getattr(options, option):
                codes.append(code)
        if self.policy.passthrough == "verbatim":
            codes.append("113110")  # every UID is kept
        if options.retain_longitudinal_full_dates:
            codes.append("113106")
            temporal = "UNMODIFIED"
        elif options.retain_longitudinal_modified_dates:
            codes.append("113107")
            temporal = "MODIFIED"
        else:
            temporal = "REMOVED"
        method = [
            f"dicomscrub {__version__}",
            "DICOM PS3.15 E.1 Basic Profile",
            f"policy {self.policy.name}"[:54] + f" {self.policy_hash[:8]}",
        ]
        if self.policy.passthrough == "verbatim":
            method.append("passthrough attributes kept verbatim")
        if header.dummy_text:
            method.append("free text replaced (no text detector)")
        ds.add_new(0x00120062, "CS", "YES")  # PatientIdentityRemoved
        ds.add_new(0x00120063, "LO", method)  # DeidentificationMethod
        ds._dict[BaseTag(0x00120064)] = _method_codes(  # DeidentificationMethodCodeSequence
            tuple(sorted(set(codes))), *ds.original_encoding
        )
        ds.add_new(0x00280303, "CS", temporal)  # LongitudinalTemporalInformationModified

    # -- bytes ------------------------------------------------------------------------------------
    def _deidentify_bytes(self, data: bytes, result: FileResult) -> tuple[Parts, Deidentified]:
        started = time.perf_counter()
        header_only = self.policy.pixels.mode == "off"
        # the identifiers and the nesting depth from the bytes: sequences then stay
        # undecoded until the header step needs them (None: pydicom parses them all)
        identifying = input_identifiers(data, max_depth=self.policy.max_sequence_depth)
        ds = read_dataset(
            data,
            max_sequence_depth=self.policy.max_sequence_depth,
            max_pixels=None if header_only else self.policy.pixels.max_pixels,
            # header only: pixel data and other large values stay in ``data`` and are
            # written back from there, never copied or decoded
            defer_size=DEFER_SIZE if header_only else None,
            keep_originals=header_only,
            parse_sequences=identifying is None,
        )
        if identifying is not None:
            ds._dicomscrub_identifying = identifying
        spans = original_spans(ds, data)
        result.timings["read"] = time.perf_counter() - started
        result.modality = str(ds.get("Modality", "") or "")
        started = time.perf_counter()
        done = self.deidentify(ds)
        result.timings["deidentify"] = time.perf_counter() - started
        result.entities = done.entities
        result.frames = done.frames
        result.uids = done.uids
        result.pixels_changed = done.pixels_changed
        started = time.perf_counter()
        parts = encode_parts(done.dataset, data, spans)
        result.timings["encode"] = time.perf_counter() - started
        return parts, done

    def verify_bytes(self, data: bytes, done: Deidentified) -> None:
        """Re-read ``data`` and raise ``verify_failed`` if it is no valid DICOM file or an
        original identifier survives.

        The output is parsed like an input (every element's length, every sequence)
        and every element at any depth is searched: in one walk over the bytes for
        the common encodings (:func:`~dicomscrub.core.rescan.scan_file`), else by
        reading it with pydicom, large values left in place.
        """
        uids_kept = self.policy.options.retain_uids or self.policy.passthrough == "verbatim"
        original_uids = () if uids_kept else done.original_uids
        hits = scan_file(data, done.deny, original_uids, max_depth=self.policy.max_sequence_depth)
        if hits is None:
            hits = self._verify_with_pydicom(data, done.deny, original_uids)
        if hits:
            shown = ", ".join(sorted(set(hits))[:10])
            raise DeidError(
                ErrorCode.VERIFY_FAILED,
                f"identifying values of the input survive in: {shown}",
            )

    def _verify_with_pydicom(
        self, data: bytes, deny: DenyList, original_uids: Iterable[str]
    ) -> list[str]:
        """Read the output with pydicom; return where ``deny`` matches (raises when unreadable)."""
        try:
            ds = read_dataset(
                data, max_sequence_depth=self.policy.max_sequence_depth, defer_size=DEFER_SIZE
            )
        except DeidError as exc:
            raise DeidError(
                ErrorCode.VERIFY_FAILED, f"the output does not read back ({exc.code.value})"
            ) from None
        if str(ds.get("PatientIdentityRemoved", "")) != "YES":
            raise DeidError(ErrorCode.VERIFY_FAILED, "PatientIdentityRemoved is not YES")
        return deny.find(ds, original_uids)

    def process_bytes(
        self, data: bytes, *, source: str = "<bytes>"
    ) -> tuple[bytes | None, FileResult]:
        """De-identify one file's bytes; never raises for problems with the file.

        Returns the output bytes (``None`` when the file failed) and its result.
        """
        started = time.perf_counter()
        result = FileResult(source=source)
        digest = SourceDigest(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parts, done = self._deidentify_bytes(data, result)
                out = b"".join(parts)
                check_started = time.perf_counter()
                self.verify_bytes(out, done)
                result.timings["verify"] = time.perf_counter() - check_started
        except DeidError as exc:
            _fail(result, exc.code, exc.message)
            out = None
        except BaseException as exc:
            if not is_library_failure(exc):
                raise
            _fail(result, *_unexpected(exc))
            log.debug("internal error", exc_info=self.policy.debug_log_phi)
            out = None
        result.source_sha256 = digest.hexdigest()
        result.timings["total"] = time.perf_counter() - started
        return out, result

    def process_file(
        self,
        source: str,
        destination: str | Callable[[FileResult], str],
        *,
        storage_options: dict[str, Any] | None = None,
    ) -> FileResult:
        """De-identify ``source`` into ``destination``; never raises for per-file problems.

        Parameters
        ----------
        source
            Local path or fsspec URL of the input (never modified).
        destination
            Local path or URL, or a callable that receives the :class:`FileResult`
            (with ``uids`` and ``modality`` set) and returns one.
        storage_options
            fsspec options for both URLs (credentials, endpoint).
        """
        started = time.perf_counter()
        result = FileResult(source=str(source))
        try:
            data = read_bytes(str(source), storage_options)
        except Exception as exc:
            _fail(result, ErrorCode.READ_FAILED, f"cannot read the input ({type(exc).__name__})")
            result.timings["total"] = time.perf_counter() - started
            return result
        digest = SourceDigest(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parts, done = self._deidentify_bytes(data, result)
                target = destination(result) if callable(destination) else str(destination)
                if same_location(str(source), target):
                    raise DeidError(
                        ErrorCode.WRITE_FAILED, "the output location is the input file itself"
                    )
                write_started = time.perf_counter()
                write_verified(
                    parts,
                    target,
                    check=lambda written: self.verify_bytes(written, done),
                    storage_options=storage_options,
                )
                result.timings["write"] = time.perf_counter() - write_started
            result.output = target
        except DeidError as exc:
            _fail(result, exc.code, exc.message)
        except BaseException as exc:
            if not is_library_failure(exc):
                raise
            _fail(result, *_unexpected(exc))
        result.source_sha256 = digest.hexdigest()
        result.timings["total"] = time.perf_counter() - started
        return result


class SourceDigest:
    """The SHA-256 of an input for the audit, computed beside the de-identification.

    hashlib releases the GIL while it hashes, so for a large input a thread
    hashes while the file is de-identified (2-3 ms for a 4 MB radiograph, at no
    cost on a core that is otherwise idle); small inputs are hashed at once. The
    thread is one per process, kept between files: starting a thread waits until
    it runs, which takes longer than hashing a few hundred kilobytes when the
    other cores are busy. A process forked from one that has it gets its own.

    >>> SourceDigest(b"abc").hexdigest()[:16]
    'ba7816bf8f01cfea'
    """

    #: Inputs at least this large are hashed in the thread (handing one over costs
    #: tens of microseconds; hashing 128 KB about 90).
    THREAD_AT = 128 << 10

    def __init__(self, data: bytes) -> None:
        self._hex = ""
        self._future: Future[str] | None = None
        if len(data) < self.THREAD_AT:
            self._hex = _sha256_hex(data)
        else:
            self._future = _hashing_thread().submit(_sha256_hex, data)

    def hexdigest(self) -> str:
        """The hex digest (waits for the thread)."""
        if self._future is not None:
            self._hex = self._future.result()
            self._future = None
        return self._hex


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_hasher: tuple[int, ThreadPoolExecutor] | None = None


def _hashing_thread() -> ThreadPoolExecutor:
    """This process's hashing thread (a forked child has none of its parent's threads)."""
    global _hasher
    if _hasher is None or _hasher[0] != os.getpid():
        _hasher = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="dicomscrub-sha256"))
    return _hasher[1]


@lru_cache(maxsize=64)
def _method_codes(codes: tuple[str, ...], implicit: bool | None, little: bool | None) -> Any:
    """DeidentificationMethodCodeSequence for ``codes``, encoded once per policy.

    A raw element in the dataset's own encoding (written as it is; pydicom parses
    it when it is read); a plain sequence when the encoding is not known.
    """
    element = DataElement(0x00120064, "SQ", Sequence([_code_item(c) for c in codes]))
    if implicit is None or little is None:
        return element
    value = element_bytes(element, implicit, little, ["iso8859"])[8 if implicit else 12 :]
    return RawDataElement(
        BaseTag(0x00120064), None if implicit else "SQ", len(value), value, 0, implicit, little
    )


def _code_item(code: str) -> Dataset:
    item = Dataset()
    item.add_new(0x00080100, "SH", code)  # CodeValue
    item.add_new(0x00080102, "SH", "DCM")  # CodingSchemeDesignator
    item.add_new(0x00080104, "LO", CID_7050[code])  # CodeMeaning
    return item


def _fail(result: FileResult, code: ErrorCode, message: str) -> None:
    result.status = "failed"
    result.error_code = code.value
    result.error_message = message
    result.output = None
    result.entities = []
    result.uids = {}


def _unexpected(exc: BaseException) -> tuple[ErrorCode, str]:
    """Error code and message for an exception no step turned into a ``DeidError``.

    pydicom's complaint about a value whose length does not fit its VR, raised when
    a value is first used, is the input's fault (``invalid_value``); anything else is
    ours (``internal_error``). The message names the exception's type only.
    """
    if isinstance(exc, BytesLengthException):
        return ErrorCode.INVALID_VALUE, "an element's length does not fit its value representation"
    return ErrorCode.INTERNAL_ERROR, f"unexpected {type(exc).__name__}"


def _frames(ds: Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def patient_key_of(ds: Dataset) -> str:
    """The identity that fixes a patient's date offset.

    PatientID with its issuer when present, else PatientName, else StudyInstanceUID
    (then intervals survive within the study only).

    >>> ds = Dataset(); ds.PatientID = " 123 "; ds.IssuerOfPatientID = "HOSP"
    >>> patient_key_of(ds)
    'id:123|HOSP'
    """
    patient_id = text_value(ds, 0x00100020).strip()  # PatientID
    if patient_id:
        issuer = text_value(ds, 0x00100021).strip()  # IssuerOfPatientID
        return f"id:{patient_id}|{issuer}"
    name = " ".join(text_value(ds, 0x00100010).replace("^", " ").upper().split())  # PatientName
    if name:
        return f"name:{name}"
    return f"study:{text_value(ds, 0x0020000D).strip()}"  # StudyInstanceUID


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR's SOP class


def _rebuild_file_meta(ds: Dataset, *, fallback_uid: str) -> None:
    """Replace the file meta with a minimal one for the de-identified dataset; zero the preamble."""
    old = getattr(ds, "file_meta", None)
    syntax = getattr(old, "TransferSyntaxUID", None) if old is not None else None
    if syntax is None:
        implicit, little = getattr(ds, "original_encoding", (True, True))
        syntax = (
            ImplicitVRLittleEndian
            if implicit
            else ExplicitVRLittleEndian
            if little in (True, None)
            else ExplicitVRBigEndian
        )
    if BaseTag(0x00080016) not in ds._dict:
        if str(getattr(old, "MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
            raise DeidError(
                ErrorCode.INVALID_VALUE,
                "a DICOMDIR (media storage directory) is an index, not an instance: "
                "de-identify the files it lists and build a new DICOMDIR from the outputs",
            )
        raise DeidError(ErrorCode.INVALID_VALUE, "the dataset has no SOPClassUID")
    sop_class = text_value(ds, 0x00080016)  # SOPClassUID
    sop_instance = text_value(ds, 0x00080018)  # SOPInstanceUID
    if not sop_instance:
        ds.SOPInstanceUID = sop_instance = fallback_uid
    meta = FileMetaDataset()
    for tag, vr, value in (
        (0x00020001, "OB", b"\x00\x01"),  # FileMetaInformationVersion
        (0x00020002, "UI", UID(sop_class)),  # MediaStorageSOPClassUID
        (0x00020003, "UI", UID(sop_instance)),  # MediaStorageSOPInstanceUID
        (0x00020010, "UI", UID(str(syntax))),  # TransferSyntaxUID
        (0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
        (0x00020013, "SH", IMPLEMENTATION_VERSION_NAME),
    ):
        # group 0002 elements in tag order, set directly (add_new validates each value
        # again; encoding checks them: validate_file_meta and the writer)
        meta._dict[BaseTag(tag)] = DataElement(tag, vr, value, validation_mode=config.IGNORE)
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128


def encode(ds: Dataset) -> bytes:
    """Encode a dataset with its file meta as a DICOM file (raises ``encode_failed``)."""
    return b"".join(encode_parts(ds))


# -- the redact command --------------------------------------------------------------------------
_WORKER_ENGINE: Engine | None = None


def _init_worker(engine: Engine) -> None:
    global _WORKER_ENGINE
    _WORKER_ENGINE = engine
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


def _work(job: tuple[str, str]) -> FileResult:
    assert _WORKER_ENGINE is not None
    return _WORKER_ENGINE.process_file(job[0], job[1])


def _jobs(source: Path, target: Path) -> list[tuple[str, str]]:
    files = sorted(p for p in source.rglob("*") if p.is_file())
    return [(str(p), str(target / p.relative_to(source))) for p in files]


def redact_path(
    input: str,
    output: str,
    *,
    policy: Policy | str | dict[str, Any] | None = None,
    secret_env: str = DEFAULT_SECRET_ENV,
    ephemeral_secret: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> int:
    """De-identify a file or a directory tree; print a summary; return the exit status.

    For a directory, every regular file below it is processed and written under
    ``output`` at the same relative path. Exit status 0 when every file is ok,
    1 when any failed.
    """
    engine = Engine.from_env(policy, secret_env=secret_env, ephemeral_secret=ephemeral_secret)
    source, target = Path(input), Path(output)
    if not source.exists():
        raise ConfigurationError(f"input {input} does not exist")
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise ConfigurationError(f"output {output} exists and is not a directory")
        if target.resolve() == source.resolve():
            raise ConfigurationError("the output directory must differ from the input directory")
        jobs = _jobs(source, target)
    else:
        destination = target / source.name if target.is_dir() else target
        jobs = [(str(source), str(destination))]
    results = list(_run_jobs(engine, jobs, workers, progress and source.is_dir()))
    print_summary(results, base=source if source.is_dir() else source.parent)
    return 1 if any(r.status == "failed" for r in results) else 0


def _run_jobs(
    engine: Engine, jobs: list[tuple[str, str]], workers: int, progress: bool
) -> Iterator[FileResult]:
    from tqdm import tqdm  # type: ignore[import-untyped]

    bar = tqdm(total=len(jobs), unit="file", disable=not progress, file=sys.stderr)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                yield engine.process_file(*job)
                bar.update()
        else:
            with ProcessPoolExecutor(
                max_workers=workers, initializer=_init_worker, initargs=(engine,)
            ) as pool:
                for result in pool.map(_work, jobs, chunksize=1):
                    yield result
                    bar.update()
    finally:
        bar.close()


def print_summary(results: list[FileResult], *, base: Path) -> None:
    """Print files ok / failed, entity counts by type, and each failure's code and reason."""
    ok = sum(1 for r in results if r.status == "ok")
    failed = [r for r in results if r.status == "failed"]
    by_type = Counter(e.entity_type for r in results for e in r.entities)
    print(f"files: {len(results)}  ok: {ok}  failed: {len(failed)}")
    if by_type:
        print("entities by type: " + ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())))
    for r in failed:
        try:
            name = str(Path(r.source).relative_to(base))
        except ValueError:
            name = r.source
        print(f"failed: {name}: {r.error_code}: {r.error_message}")
