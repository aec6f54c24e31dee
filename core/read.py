"""Read one DICOM file from bytes, rejecting bad input early with a clear error code.

Nothing large is decoded here: pixel data stays encoded. Every rejection is a
:class:`~dicomscrub.core.errors.DeidError` whose message names sizes, tags and
transfer syntaxes, never values from the file.

Checks, in order: zero bytes (``empty_file``); no ``DICM`` prefix and no
plausible raw dataset start (``not_dicom``); a transfer syntax pydicom does not
know (``unsupported_transfer_syntax``); parse errors, element lengths running
past the end of the data, or an image with no pixel data left (``truncated``);
sequences nested deeper than the policy allows (``sequence_too_deep``); more
declared pixels than the cap when pixels are going to be decoded
(``too_many_pixels``).

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> data = open(get_testdata_file("CT_small.dcm"), "rb").read()
>>> read_dataset(data).Modality
'CT'
>>> try:
...     read_dataset(b"hello")
... except DeidError as exc:
...     exc.code.value
'not_dicom'
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from functools import cache
from typing import Any

import pydicom
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import VR

from .errors import DeidError, ErrorCode

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # PixelData, FloatPixelData, DoubleFloat...
# A raw dataset without preamble must start with a group 0x0002 or 0x0008 element.
_RAW_START_GROUPS = (0x0002, 0x0008)


def read_dataset(
    data: bytes,
    *,
    max_sequence_depth: int = 16,
    max_pixels: int | None = None,
    defer_size: int | None = None,
    keep_originals: bool = False,
    parse_sequences: bool = True,
) -> FileDataset:
    """Parse ``data`` into a dataset or raise :class:`DeidError`.

    Parameters
    ----------
    data
        The whole file.
    max_sequence_depth
        Deepest allowed sequence nesting (a top-level sequence's items are depth 1).
    max_pixels
        When given, the largest ``Rows*Columns*NumberOfFrames*SamplesPerPixel``
        accepted (checked from the header, before any decoding).
    defer_size
        Top-level values longer than this many bytes (pixel data, overlays) are
        not copied out of ``data`` while parsing; pydicom reads them from it when
        they are first used (:func:`raw_value`). Their lengths are still checked.
    keep_originals
        Remember the top-level elements as read (:func:`originals`): checking the
        nesting depth parses every sequence, and :func:`restore_raw` can then put
        an unchanged sequence back in its undecoded form.
    parse_sequences
        False when the caller has checked the nesting depth on the bytes
        (:func:`dicomscrub.core.rescan.input_identifiers`): sequences then stay
        undecoded until they are used.
    """
    if not data:
        raise DeidError(ErrorCode.EMPTY_FILE, "the file is empty (0 bytes)")
    has_prefix = len(data) >= 132 and data[128:132] == b"DICM"
    if not has_prefix and not _looks_like_raw_dataset(data):
        raise DeidError(ErrorCode.NOT_DICOM, _NOT_DICOM.format(size=len(data)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=not has_prefix, defer_size=defer_size)
    except RecursionError:
        raise DeidError(
            ErrorCode.SEQUENCE_TOO_DEEP, "sequences are nested too deeply to parse"
        ) from None
    except InvalidDicomError:
        raise DeidError(ErrorCode.NOT_DICOM, "pydicom does not recognise the file") from None
    except BytesLengthException:
        raise DeidError(
            ErrorCode.INVALID_VALUE, "an element's length does not fit its value representation"
        ) from None
    except zlib.error:
        raise DeidError(
            ErrorCode.TRUNCATED, "the deflated dataset cannot be inflated (damaged or cut short)"
        ) from None
    except NotImplementedError:  # pydicom's "Unknown Value Representation" (in the file meta)
        raise DeidError(
            ErrorCode.INVALID_VALUE,
            "an element has an unknown value representation",
        ) from None
    except (EOFError, OSError, struct.error, ValueError, KeyError, IndexError) as exc:
        raise DeidError(
            ErrorCode.TRUNCATED,
            f"the data ends or breaks off inside an element ({type(exc).__name__})",
        ) from None
    if not has_prefix and 0x00080016 not in ds:
        # a raw dataset (no preamble) is accepted only when it parses into a real one
        raise DeidError(ErrorCode.NOT_DICOM, _NOT_DICOM.format(size=len(data)))
    _check_transfer_syntax(ds)
    if len(ds) == 0:
        raise DeidError(ErrorCode.TRUNCATED, "no data elements after the file meta information")
    _check_vrs(ds)
    if not _is_deflated(ds):  # offsets of a deflated dataset refer to the inflated stream
        _check_lengths(ds, data)
    if not parse_sequences:
        if max_pixels is not None:
            check_pixel_cap(ds, max_pixels)
        return ds
    as_read = dict(ds._dict) if keep_originals else None
    try:
        depth = sequence_depth(ds, max_sequence_depth + 1)
    except RecursionError:
        raise DeidError(
            ErrorCode.SEQUENCE_TOO_DEEP, "sequences are nested too deeply to parse"
        ) from None
    except Exception as exc:
        raise DeidError(
            ErrorCode.INVALID_VALUE, f"a sequence could not be parsed ({type(exc).__name__})"
        ) from None
    if depth > max_sequence_depth:
        raise DeidError(
            ErrorCode.SEQUENCE_TOO_DEEP,
            f"sequences nest deeper than the policy's limit of {max_sequence_depth}",
        )
    if max_pixels is not None:
        check_pixel_cap(ds, max_pixels)
    if as_read is not None:
        # (element as read, element after parsing) of each sequence parsed above
        ds._dicomscrub_originals = {
            tag: (raw, ds._dict[tag]) for tag, raw in as_read.items() if ds._dict[tag] is not raw
        }
    return ds


def originals(ds: Dataset) -> dict[BaseTag, Any]:
    """The top-level elements of ``ds`` as read (``keep_originals``), else its current ones."""
    found = getattr(ds, "_dicomscrub_originals", None)
    if found is None:
        return dict(ds._dict)
    return {**ds._dict, **{tag: raw for tag, (raw, _) in found.items()}}


_NOT_DICOM = "no DICM prefix at byte 128 and no DICOM dataset at byte 0 ({size} bytes)"


def _looks_like_raw_dataset(data: bytes) -> bool:
    """A dataset without preamble starts with a group 0002 or 0008 element (either endian)."""
    if len(data) < 8:
        return False
    little, big = struct.unpack("<H", data[:2])[0], struct.unpack(">H", data[:2])[0]
    return little in _RAW_START_GROUPS or big in _RAW_START_GROUPS


def _check_transfer_syntax(ds: FileDataset) -> None:
    meta = getattr(ds, "file_meta", None)
    uid = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    if uid is None:
        return  # raw dataset: pydicom guessed the encoding from the data
    if not UID(str(uid)).is_transfer_syntax:
        raise DeidError(
            ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX,
            "the transfer syntax UID in the file meta is not a known DICOM transfer syntax",
        )


def _is_deflated(ds: FileDataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    uid = str(getattr(meta, "TransferSyntaxUID", "") or "")
    return uid in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")


_KNOWN_VRS = frozenset(str(vr) for vr in VR)


def _check_vrs(ds: FileDataset) -> None:
    """Raise INVALID_VALUE for a top-level element whose explicit VR is no DICOM VR.

    pydicom reads such an element and fails only when its value is first used
    (deep in the header or pixel step); sequence items are checked when parsed.
    """
    for raw in ds._dict.values():
        vr = getattr(raw, "VR", None)
        if vr is not None and vr not in _KNOWN_VRS:
            raise DeidError(
                ErrorCode.INVALID_VALUE,
                f"element ({raw.tag >> 16:04X},{raw.tag & 0xFFFF:04X}) has an unknown value "
                "representation",
            )


def _check_lengths(ds: FileDataset, data: bytes) -> None:
    """Raise TRUNCATED when a top-level element runs past the end or the image lost its pixels."""
    for raw in ds._dict.values():
        tell = getattr(raw, "value_tell", None)
        length = getattr(raw, "length", None)
        if tell is None or length is None or length == 0xFFFFFFFF:
            continue
        size = len(data)
        if tell + length > size:
            raise DeidError(
                ErrorCode.TRUNCATED,
                f"element ({raw.tag >> 16:04X},{raw.tag & 0xFFFF:04X}) declares {length} bytes "
                f"but the file ends {tell + length - size} bytes early",
            )
    ends = [
        int(getattr(raw, "value_tell", 0)) + int(getattr(raw, "length", 0))
        for raw in ds._dict.values()
        if getattr(raw, "value_tell", None) is not None
        and getattr(raw, "length", None) not in (None, 0xFFFFFFFF)
    ]
    trailing = len(data) - max(ends) if ends else 0
    if 0 < trailing < 12:  # pydicom stops silently when an element header is cut short
        raise DeidError(
            ErrorCode.TRUNCATED, f"the file ends {trailing} bytes into an element header"
        )
    if not any(tag in ds for tag in PIXEL_TAGS) and _pixel_tag_in(data):
        raise DeidError(
            ErrorCode.TRUNCATED,
            "the file holds a Pixel Data element that could not be read: it looks truncated",
        )


def _pixel_tag_in(data: bytes) -> bool:
    """True when the bytes hold a Pixel Data tag (little or big endian)."""
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def raw_items(ds: Dataset) -> list[tuple[BaseTag, Any]]:
    """A snapshot of ``ds``'s elements as stored: raw (undecoded) or decoded.

    Reads pydicom's element store directly: ``Dataset.get_item`` per tag costs
    more than the rest of a header pass. Safe to modify ``ds`` while iterating.
    """
    return list(ds._dict.items())


def raw_value(ds: Dataset, raw: Any) -> Any:
    """The stored value of a raw element, reading a deferred one (see ``defer_size``).

    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.add_new(0x00091010, "OB", b"ab")
    >>> raw_value(ds, ds.get_item(0x00091010))
    b'ab'
    """
    value = getattr(raw, "value", None)
    if value is None and isinstance(raw, RawDataElement) and raw.length:
        value = ds[raw.tag].value  # pydicom reads the deferred value now
    return value


def text_value(ds: Dataset, tag: int) -> str:
    """The value of a top-level string element as one text, ``""`` when absent or empty.

    Read from the raw bytes when the element is still undecoded, so that it stays
    undecoded (its original bytes are written back, and pydicom's conversion,
    which costs more than the rest of a lookup, is skipped). Otherwise, and for
    several values or values pydicom must decode, this is ``str(ds.get(tag) or "")``.

    >>> ds = Dataset(); ds.Modality = "CT"
    >>> text_value(ds, 0x00080060), text_value(ds, 0x00100020)
    ('CT', '')
    """
    key = BaseTag(tag)
    raw = ds._dict.get(key)
    if raw is None:
        return ""
    value = raw.value
    if isinstance(value, str):
        return str(value)
    if isinstance(raw, RawDataElement) and isinstance(value, bytes):
        vr = element_vr(tag, raw.VR)
        found = decode_text(value, vr, dataset_codec(ds, "latin_1") if vr in TEXT_VRS else None)
        if found is not None and len(found) <= 1:
            return found[0] if found else ""
    decoded = ds[key].value
    return str(decoded) if decoded else ""


def restore_raw(ds: Dataset, tag: int, raw: Any) -> None:
    """Put an element's undecoded form back (it was decoded only to look inside).

    The original bytes are then written instead of a re-encoding of the element.
    ``raw`` is restored when it is undecoded; a sequence that :func:`read_dataset`
    parsed (``keep_originals``) gets its form as read back, unless the element was
    replaced since.
    """
    if type(raw).__name__ == "RawDataElement":
        ds._dict[BaseTag(tag)] = raw
        return
    found = getattr(ds, "_dicomscrub_originals", {}).get(tag)
    if found is not None and found[1] is raw and ds._dict.get(BaseTag(tag)) is raw:
        ds._dict[BaseTag(tag)] = found[0]


@cache
def element_vr(tag: int, raw_vr: str | None) -> str:
    """The VR of an element without decoding it: the file's (explicit VR), else the
    dictionary's (implicit VR, or UN for a known tag), else ``UN``.

    >>> element_vr(0x00100010, None), element_vr(0x00100010, "UN"), element_vr(0x00091001, None)
    ('PN', 'PN', 'UN')
    """
    if raw_vr not in (None, "UN"):
        return str(raw_vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


@cache
def keyword_of(tag: int) -> str:
    """The DICOM keyword of ``tag`` (``""`` for private and unknown tags), cached.

    >>> keyword_of(0x00100010), keyword_of(0x00091010)
    ('PatientName', '')
    """
    return str(keyword_for_tag(tag) or "")


#: VRs whose raw bytes are text.
TEXT_VRS = frozenset({"AE", "LO", "LT", "SH", "ST", "UC", "UT", "UR", "PN"})
STRING_VRS = TEXT_VRS | {"CS", "DA", "DT", "TM", "AS", "UI", "DS", "IS"}
SINGLE_VALUED_TEXT = frozenset({"LT", "ST", "UT", "UR"})


@cache
def codec_for(charset: tuple[str, ...]) -> str | None:
    """Python codec for raw text in a SpecificCharacterSet (None: code extensions).

    >>> codec_for(("ISO_IR 100",)), codec_for(("ISO_IR 192",)), codec_for(("", "ISO 2022 IR 87"))
    ('latin_1', 'UTF8', None)
    """
    terms = [t.strip() for t in charset] or ["ISO_IR 6"]
    terms = terms if any(terms) else ["ISO_IR 6"]
    if len(terms) > 1 or terms[0].startswith("ISO 2022"):
        return None
    return python_encoding.get(terms[0] or "ISO_IR 6") or None


def dataset_codec(ds: Dataset, inherited: str | None) -> str | None:
    """The codec of ``ds``'s own SpecificCharacterSet, else ``inherited``."""
    raw = ds._dict.get(BaseTag(0x00080005))
    if raw is None:
        return inherited
    value = raw.value
    if isinstance(value, bytes):
        return codec_for(tuple(value.decode("ascii", "replace").split("\\")))
    if isinstance(value, str):
        return codec_for((value,))
    return codec_for(tuple(str(v) for v in value or ()))


def decode_text(value: bytes, vr: str, codec: str | None) -> list[str] | None:
    r"""The values of a string element's raw bytes as text, or None when pydicom must decode.

    None for non-string VRs, code extensions (``codec`` None) and person names with
    escape sequences.

    >>> decode_text(b"DOE^JANE\\ROE^J ", "PN", "latin_1"), decode_text(b"x", "US", "latin_1")
    (['DOE^JANE', 'ROE^J'], None)
    """
    if vr not in STRING_VRS:
        return None
    use = codec if vr in TEXT_VRS else "latin_1"
    if use is None or (vr == "PN" and b"\x1b" in value):
        return None
    text = value.decode(use, "replace")
    if vr in SINGLE_VALUED_TEXT:
        text = text.rstrip(" \x00")
        return [text] if text else []
    parts = [p.strip(" \x00") for p in text.split("\\")]
    return [] if parts == [""] else parts


def decode_values(ds: Dataset, tag: int, vr: str, raw: object, codec: str | None) -> list[str]:
    """The values of a string element as text, from its raw bytes when possible.

    Decoding raw bytes directly leaves the element undecoded in ``ds`` (pydicom then
    writes its original bytes back). Falls back to pydicom for code extensions and
    already-decoded elements. Raises whatever pydicom raises for undecodable values.
    """
    value = getattr(raw, "value", None)
    if isinstance(value, bytes):
        found = decode_text(value, vr, codec)
        if found is not None:
            return found
    decoded = ds[tag].value
    if decoded is None or decoded == "":
        return []
    if isinstance(decoded, list | tuple) or type(decoded).__name__ == "MultiValue":
        return [str(v) for v in decoded]
    return [str(decoded)]


def sequence_depth(ds: Dataset, limit: int) -> int:
    """Return the deepest sequence nesting in ``ds``, stopping early once ``limit`` is reached.

    >>> from pydicom.dataset import Dataset
    >>> from pydicom.sequence import Sequence
    >>> inner = Dataset(); inner.PatientID = "x"
    >>> outer = Dataset(); outer.ReferencedStudySequence = Sequence([inner])
    >>> sequence_depth(outer, 10)
    1
    """
    deepest = 0
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        current, depth = stack.pop()
        for key, raw in raw_items(current):
            if element_vr(int(key), raw.VR if raw is not None else None) != "SQ" and (
                raw is None or raw.VR != "UN"
            ):
                continue
            element = current[key]
            if element.VR != "SQ":
                continue
            for item in element.value or ():
                if depth + 1 > deepest:
                    deepest = depth + 1
                    if deepest >= limit:
                        return deepest
                if isinstance(item, Dataset):
                    stack.append((item, depth + 1))
    return deepest


def check_pixel_cap(ds: Dataset, max_pixels: int) -> None:
    """Raise TOO_MANY_PIXELS when the header declares more than ``max_pixels`` samples."""
    try:
        rows = int(ds.get("Rows", 0) or 0)
        columns = int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        raise DeidError(
            ErrorCode.INVALID_VALUE,
            "Rows, Columns, NumberOfFrames or SamplesPerPixel is not a number",
        ) from None
    declared = rows * columns * frames * samples
    if declared > max_pixels:
        raise DeidError(
            ErrorCode.TOO_MANY_PIXELS,
            f"the header declares {declared} pixel samples, more than the cap of {max_pixels}",
        )
