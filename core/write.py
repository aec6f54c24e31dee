"""Encode the de-identified dataset and write it safely: temporary name, re-read, verify, rename.

Encoding (:func:`encode_parts`) writes every top-level element that the
de-identification left untouched as the very bytes it had in the input
(:func:`original_spans`), and only the changed and new elements through
pydicom's writer: kept pixel data is neither decoded nor copied element by
element, and the output of an element nobody changed is its input.

Works for local paths and fsspec URLs (``s3://``, ``memory://`` ...). The
temporary file sits next to the target (``.<name>.<random>.dicomscrub-tmp``)
so the final rename stays on the same file system; on object stores the rename
is a copy and delete, and readers only ever see the final name once it is
complete. On any failure the temporary file is removed and nothing is left at
the target.

Examples
--------
>>> import tempfile, os
>>> target = os.path.join(tempfile.mkdtemp(), "sub", "out.dcm")
>>> write_verified(b"data", target, check=lambda data: None)
>>> open(target, "rb").read()
b'data'
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import posixpath
import struct
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import fsspec
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_offset_to_value
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from .errors import DeidError, ErrorCode
from .read import codec_for, originals

TMP_SUFFIX = ".dicomscrub-tmp"
#: The bytes of a file as written: a list of pieces (input slices are not copied).
Parts = list[bytes | memoryview]
#: tag -> (the element as read, start, end) of the top-level elements in the input bytes.
Spans = dict[int, tuple[Any, int, int]]
_SEQUENCE_DELIMITER = {
    True: b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
    False: b"\xff\xfe\xe0\xdd\x00\x00\x00\x00",
}
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")


#: VRs whose ASCII text values :func:`encode_text_element` writes (others go to pydicom).
TEXT_ELEMENT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)


def encode_text_element(element: Any, implicit: bool, little: bool) -> bytes | None:
    """The bytes pydicom writes for a text element with an ASCII value, or None.

    None (pydicom's writer is used then) for other VRs, raw elements, values that
    are not plain text or not ASCII (character sets, code extensions), and values
    too long for an explicit VR 16-bit length. Values are joined with backslashes
    and padded to an even length (UI with NUL, the others with a space).

    >>> from pydicom.dataelem import DataElement
    >>> encode_text_element(DataElement(0x00100010, "PN", "DOE^JANE^Q"), False, True)
    b'\\x10\\x00\\x10\\x00PN\\n\\x00DOE^JANE^Q'
    """
    vr = element.VR
    if vr not in TEXT_ELEMENT_VRS or element.is_raw:
        return None
    value = element.value
    if value is None:
        text = ""
    elif isinstance(value, str | PersonName):
        text = str(value)
    elif isinstance(value, MultiValue | list | tuple) and all(
        isinstance(v, str | PersonName) for v in value
    ):
        text = "\\".join(str(v) for v in value)
    else:
        return None
    if not text.isascii():
        return None
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return _with_header(element.tag, vr, data, implicit, little)


def element_bytes(element: Any, implicit: bool, little: bool, encodings: Any) -> bytes:
    """One element as pydicom's writer encodes it (header and value) in the given encoding.

    >>> from pydicom.dataelem import DataElement
    >>> element_bytes(DataElement(0x00280010, "US", 512), False, True, ["iso8859"])
    b'(\\x00\\x10\\x00US\\x02\\x00\\x00\\x02'
    """
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = implicit, little
    write_data_element(buffer, element, encodings)
    return buffer.getvalue()


def _with_header(tag: int, vr: str, value: bytes, implicit: bool, little: bool) -> bytes | None:
    """``value`` behind its element header (tag, VR, length) as pydicom writes it, or None
    when an explicit VR 16-bit length cannot hold it."""
    order = "<" if little else ">"
    if implicit:
        return struct.pack(f"{order}HHL", tag >> 16, tag & 0xFFFF, len(value)) + value
    if vr in _LONG_LENGTH_VRS:
        head = struct.pack(f"{order}HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value))
        return head + value
    if len(value) > 0xFFFF:
        return None
    return struct.pack(f"{order}HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _fast_element(element: Any, encoding: tuple[bool, bool]) -> bytes | None:
    """The bytes pydicom writes for ``element``, built without its writer, or None.

    Covers ASCII text (:func:`encode_text_element`), raw elements of defined length
    and sequences made of those (:func:`encode_sequence`): what the header pass
    leaves in changed sequences. Only for datasets whose text is plain (no code
    extensions); None means pydicom's writer must write it.
    """
    if element.is_raw:
        return _raw_element(element, encoding)
    if element.VR == "SQ":
        return encode_sequence(element, encoding)
    if element.VR in _BINARY_NUMBERS:
        return encode_number_element(element, *encoding)
    return encode_text_element(element, *encoding)


#: struct codes of the binary number VRs :func:`encode_number_element` writes.
_BINARY_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}


def encode_number_element(element: Any, implicit: bool, little: bool) -> bytes | None:
    """The bytes pydicom writes for a binary number element (US, SS, UL, SL, FL, FD), or None.

    Such an element is decoded when pydicom reads one of them for itself (the
    pixel representation) and is then written from its value. None for other VRs,
    raw elements and values that are not plain numbers.

    >>> from pydicom.dataelem import DataElement
    >>> encode_number_element(DataElement(0x00280103, "US", 1), False, True)
    b'(\\x00\\x03\\x01US\\x02\\x00\\x01\\x00'
    """
    code = _BINARY_NUMBERS.get(element.VR)
    if code is None or element.is_raw:
        return None
    value = element.value
    if value is None or (isinstance(value, str | bytes) and not value):
        values: list[Any] = []
    elif isinstance(value, MultiValue | list | tuple):
        values = list(value)
    else:
        values = [value]
    kinds = (int, float) if code in "fd" else int
    if any(isinstance(n, bool) or not isinstance(n, kinds) for n in values):
        return None
    try:
        data = struct.pack(("<" if little else ">") + code * len(values), *values)
    except struct.error:
        return None  # out of range: pydicom's writer reports it
    return _with_header(element.tag, element.VR, data, implicit, little)


def _raw_element(raw: Any, encoding: tuple[bool, bool]) -> bytes | None:
    """A raw (undecoded) element of defined length as pydicom writes it, or None."""
    implicit, little = encoding
    value = raw.value
    if not isinstance(value, bytes) or raw.length == 0xFFFFFFFF:
        return None  # deferred or undefined length: pydicom handles those
    if (raw.is_implicit_VR, raw.is_little_endian) != (implicit, little):
        return None
    if not implicit and (raw.VR is None or len(raw.VR) != 2):
        return None
    return _with_header(raw.tag, raw.VR or "", value, implicit, little)


def encode_sequence(element: Any, encoding: tuple[bool, bool]) -> bytes | None:
    """A sequence as pydicom writes it (same length forms), or None when it needs pydicom.

    Items are written when they were read in ``encoding`` and carry no character
    set of their own, and every element in them is plain (text, raw, sequences).

    >>> from pydicom.dataset import Dataset
    >>> from pydicom.dataelem import DataElement
    >>> item = Dataset(); item.CodeValue = "113100"
    >>> item.set_original_encoding(False, True, None)
    >>> data = encode_sequence(DataElement(0x00120064, "SQ", [item]), (False, True))
    >>> data[:6], data[12:16], len(data)
    (b'\\x12\\x00d\\x00SQ', b'\\xfe\\xff\\x00\\xe0', 34)
    """
    implicit, little = encoding
    order = "<" if little else ">"
    body: list[bytes] = []
    for item in element.value or ():
        if tuple(item.original_encoding) != encoding or 0x00080005 in item._dict:
            return None
        pieces = []
        for tag in sorted(item._dict):
            if tag.element == 0 and tag.group > 6:
                continue  # group lengths are not written
            piece = _fast_element(item._dict[tag], encoding)
            if piece is None:
                return None
            pieces.append(piece)
        content = b"".join(pieces)
        if item.is_undefined_length_sequence_item:
            body += (struct.pack(f"{order}HHL", 0xFFFE, 0xE000, 0xFFFFFFFF), content)
            body.append(struct.pack(f"{order}HHL", 0xFFFE, 0xE00D, 0))
        else:
            body += (struct.pack(f"{order}HHL", 0xFFFE, 0xE000, len(content)), content)
    value = b"".join(body)
    tag = element.tag
    undefined = element.is_undefined_length
    length = 0xFFFFFFFF if undefined else len(value)
    if implicit:
        head = struct.pack(f"{order}HHL", tag >> 16, tag & 0xFFFF, length)
    else:
        head = struct.pack(f"{order}HH2sHL", tag >> 16, tag & 0xFFFF, b"SQ", 0, length)
    tail = struct.pack(f"{order}HHL", 0xFFFE, 0xE0DD, 0) if undefined else b""
    return head + value + tail


def _file_meta_bytes(meta: FileMetaDataset) -> bytes:
    """The File Meta Information group as pydicom writes it (explicit VR little endian)."""
    pieces = []
    for tag in sorted(meta._dict):
        if tag == 0x00020000:
            continue  # the group length is computed below
        element = meta[tag]
        if tag == 0x00020001 and element.value == b"\x00\x01":  # FileMetaInformationVersion
            piece: bytes | None = b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01"
        else:
            piece = encode_text_element(element, False, True)
        if piece is None:  # anything unusual: pydicom writes the whole group
            buffer = DicomBytesIO()
            write_file_meta_info(buffer, copy.deepcopy(meta), enforce_standard=True)
            return buffer.getvalue()
        pieces.append(piece)
    body = b"".join(pieces)
    return b"\x02\x00\x00\x00UL\x04\x00" + struct.pack("<L", len(body)) + body


def original_spans(ds: Dataset, data: bytes) -> Spans:
    """Where each top-level element of ``ds`` (as just read from ``data``) lies in ``data``.

    Call it right after reading, before anything changes (sequences parsed by
    :func:`~dicomscrub.core.read.read_dataset` count as read). An element gets a span
    only when the bytes there are consistent with it: its tag (and explicit VR)
    at the start, its end where the next element starts (or at the end of the
    data), a sequence delimiter closing an undefined length.

    >>> from pydicom.data import get_testdata_file
    >>> from dicomscrub.core.read import read_dataset
    >>> data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> spans = original_spans(read_dataset(data), data)
    >>> element, start, end = spans[0x00100010]  # PatientName
    >>> data[start + 4 : start + 6], data[start + 8 : end]
    (b'PN', b'CompressedSamples^CT1 ')
    """
    meta = getattr(ds, "file_meta", None)
    if str(getattr(meta, "TransferSyntaxUID", "") or "") in _DEFLATED:
        return {}  # positions refer to the inflated stream
    placed: list[tuple[int, int, Any]] = []
    implicit, little = ds.original_encoding
    for tag, element in originals(ds).items():
        if element.is_raw and (element.is_implicit_VR, element.is_little_endian) != (
            implicit,
            little,
        ):
            return {}  # elements not encoded as the file says: let pydicom sort it out
        tell = element.value_tell if element.is_raw else element.file_tell
        # (a sequence of undefined length, parsed while reading, only bounds the others)
        if tell is None or implicit is None or little is None:
            return {}
        start = tell - data_element_offset_to_value(implicit, element.VR)
        if data[start : start + 4] != struct.pack(
            "<HH" if little else ">HH", tag >> 16, tag & 0xFFFF
        ):
            return {}
        placed.append((start, tell, element))
    placed.sort(key=lambda p: p[0])
    spans: Spans = {}
    for index, (start, tell, element) in enumerate(placed):
        if not element.is_raw:
            continue  # a parsed element can change in place: it is never taken as it was
        end = placed[index + 1][0] if index + 1 < len(placed) else len(data)
        if element.length != 0xFFFFFFFF:
            if tell + element.length != end:
                continue
        elif data[end - 8 : end] != _SEQUENCE_DELIMITER[bool(element.is_little_endian)]:
            continue
        spans[element.tag] = (element, start, end)
    return spans


def encode_parts(ds: Dataset, source: bytes | None = None, spans: Spans | None = None) -> Parts:
    """Encode ``ds`` with its file meta as a DICOM file, as a list of byte pieces.

    Top-level elements still exactly as read (the same objects as in ``spans``)
    are taken from ``source`` as they are; the others go through pydicom's
    writer. Without ``source`` (or when the dataset's encoding or character set
    changed, or the transfer syntax is deflated) pydicom writes everything.
    Raises ``encode_failed``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts = _splice(ds, source, spans) if source is not None and spans else None
            if parts is None:
                _parse_implicit_elements(ds)
                buffer = io.BytesIO()
                pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
                parts = [buffer.getvalue()]
    except DeidError:
        raise
    except Exception as exc:
        raise DeidError(
            ErrorCode.ENCODE_FAILED,
            f"the de-identified dataset cannot be encoded ({type(exc).__name__})",
        ) from None
    return parts


def _parse_implicit_elements(ds: Dataset) -> None:
    """Give every element a VR when an explicit-VR file's dataset was encoded implicitly.

    pydicom reads such a file as found (implicit VR) but cannot write its raw
    elements, which have no VR, as the explicit transfer syntax says; parsed,
    they take their VR from the data dictionary (private ones become UN).
    """
    syntax = UID(str(getattr(ds.file_meta, "TransferSyntaxUID", "") or ""))
    if not syntax.is_transfer_syntax or syntax.is_implicit_VR:
        return
    if any(getattr(e, "is_raw", False) and e.VR is None for e in ds._dict.values()):
        ds.walk(lambda dataset, element: None)


def _charset_terms(ds: Dataset) -> list[str]:
    value = ds.get("SpecificCharacterSet", None)
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, MultiValue | list) else [str(value)]


def _splice(ds: Dataset, source: bytes, spans: Spans) -> Parts | None:
    """The file as pieces, unchanged top-level elements taken from ``source``; None: not here."""
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if str(syntax) in _DEFLATED or not syntax.is_transfer_syntax:
        return None
    encoding = (syntax.is_implicit_VR, syntax.is_little_endian)
    if encoding != tuple(ds.original_encoding):
        return None
    if ds.original_character_set != ds._character_set:
        return None
    if any(tag >> 16 in (0, 2) for tag in ds._dict):
        raise ValueError("command or file meta elements in the dataset")
    validate_file_meta(ds.file_meta, enforce_standard=True)
    preamble = ds.preamble if ds.preamble else b"\x00" * 128
    parts: Parts = [preamble + b"DICM" + _file_meta_bytes(ds.file_meta)]
    plain_text = codec_for(tuple(_charset_terms(ds))) is not None
    view = memoryview(source)
    encodings = ds.get("SpecificCharacterSet", "iso8859")
    changed: list[bytes] = []  # encoded elements since the last stretch kept
    run: tuple[int, int] | None = None  # the current stretch of the input being kept
    for tag in sorted(ds._dict):
        if tag.element == 0 and tag.group > 6:
            continue  # group lengths are not written (pydicom does the same)
        element = ds._dict[tag]
        span = spans.get(tag)
        if span is not None and span[0] is not element:
            span = None  # changed since it was read
        undefined = span is not None and span[0].length == 0xFFFFFFFF
        if span is not None and tag == 0x7FE00010 and undefined != syntax.is_compressed:
            span = None  # pydicom fixes the pixel data length form: let it write this one
        if span is not None:
            if changed:  # changed elements before this one (run is None then)
                parts.append(b"".join(changed))
                changed = []
            if run is not None and run[1] == span[1]:
                run = (run[0], span[2])
            else:
                if run is not None:
                    parts.append(view[run[0] : run[1]])
                run = (span[1], span[2])
            continue
        if run is not None:
            parts.append(view[run[0] : run[1]])
            run = None
        item = ds.get_item(tag)  # a deferred value is read now
        if tag == 0x7FE00010:  # PS3.5 A.4: encapsulated pixel data has an undefined length
            item = ds[tag]
            item.is_undefined_length = syntax.is_compressed
        encoded = _fast_element(item, encoding) if plain_text else None
        if encoded is None:
            encoded = element_bytes(item, *encoding, encodings)
        changed.append(encoded)
    if run is not None:
        parts.append(view[run[0] : run[1]])
    if changed:
        parts.append(b"".join(changed))
    return parts


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """Return ``(fsspec filesystem, path)`` for a local path or URL."""
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, path


def _local(url: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The path when ``url`` is a plain local path (no protocol, no options), else None.

    Plain paths skip fsspec (the same operations, less overhead per file).
    """
    if storage_options or "://" in url or "::" in url:
        return None
    return url


def read_bytes(url: str, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read a whole file from a local path or URL."""
    local = _local(url, storage_options)
    if local is not None:
        with open(local, "rb") as fh:
            return fh.read()
    fs, path = filesystem(url, storage_options)
    data: bytes = fs.cat_file(path)
    return data


def same_location(a: str, b: str) -> bool:
    """True when two local paths or URLs name the same file."""
    local_a, local_b = _local(a), _local(b)
    if local_a is not None and local_b is not None:
        if os.path.abspath(local_a) == os.path.abspath(local_b):
            return True
        try:  # the same file under another name (symlink, hard link, "..")
            return os.path.samefile(local_a, local_b)
        except OSError:
            return False  # one of them does not exist (a new output): not the same file
    try:
        fs_a, path_a = filesystem(a)
        fs_b, path_b = filesystem(b)
    except Exception:
        return False
    if type(fs_a) is not type(fs_b):
        return False
    if _is_local(fs_a):
        return os.path.realpath(path_a) == os.path.realpath(path_b)
    return bool(path_a == path_b)


def write_verified(
    data: bytes | Parts,
    destination: str,
    *,
    check: Callable[[bytes], None],
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Write ``data`` to ``destination`` via a temporary name, after ``check`` passes on re-read.

    ``data`` is the file's bytes or its pieces (:func:`encode_parts`; written one
    after the other, never joined in memory). ``check`` receives the bytes read
    back from the temporary file and raises :class:`DeidError` to refuse them.
    Raises :class:`DeidError` (``write_failed`` or the check's code); the target is
    untouched on failure.
    """
    parts: Parts = [data] if isinstance(data, bytes) else list(data)
    local = _local(destination, storage_options)
    if local is not None:
        _write_local(parts, local, check)
        return
    try:
        fs, path = filesystem(destination, storage_options)
    except Exception as exc:
        raise DeidError(
            ErrorCode.WRITE_FAILED, f"cannot open the output location ({type(exc).__name__})"
        ) from None
    parent, name = posixpath.split(path)
    tmp = posixpath.join(parent, f".{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
    try:
        if parent:
            fs.makedirs(parent, exist_ok=True)
        joined = parts[0] if len(parts) == 1 else b"".join(parts)
        fs.pipe_file(tmp, joined)
        written = fs.cat_file(tmp)
        if written != joined:
            raise DeidError(ErrorCode.WRITE_FAILED, "the bytes read back differ from those written")
        check(written)
        if _is_local(fs):
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    except DeidError:
        _remove_quietly(fs, tmp)
        raise
    except Exception as exc:
        _remove_quietly(fs, tmp)
        raise DeidError(
            ErrorCode.WRITE_FAILED, f"writing the output failed ({type(exc).__name__})"
        ) from None


def _write_local(parts: Parts, path: str, check: Callable[[bytes], None]) -> None:
    """:func:`write_verified` for a plain local path (os calls, no fsspec)."""
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
    try:
        if parent:
            os.makedirs(parent, exist_ok=True)
        written = _write_and_read_back(tmp, parts)
        if not _same_bytes(written, parts):
            raise DeidError(ErrorCode.WRITE_FAILED, "the bytes read back differ from those written")
        check(written)
        os.replace(tmp, path)
    except DeidError:
        _remove_local(tmp)
        raise
    except Exception as exc:
        _remove_local(tmp)
        raise DeidError(
            ErrorCode.WRITE_FAILED, f"writing the output failed ({type(exc).__name__})"
        ) from None


def _write_and_read_back(path: str, parts: Parts) -> bytes:
    """Create ``path`` (it must not exist), write the pieces, and return what the file holds.

    One descriptor for both (plain ``os`` calls: no buffered file objects).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        total = 0
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                count = os.write(fd, view)
                view = view[count:]
                total += count
        chunks: list[bytes] = []
        offset = 0
        while chunk := os.pread(fd, total - offset + 1, offset):  # +1: sees any bytes beyond
            chunks.append(chunk)
            offset += len(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _same_bytes(written: bytes, parts: Parts) -> bool:
    """True when ``written`` is exactly the pieces one after the other (no joining)."""
    offset = 0
    for part in parts:
        if not written.startswith(part, offset):
            return False
        offset += len(part)
    return offset == len(written)


def _remove_local(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _remove_quietly(fs: Any, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm_file(path)
    except Exception:  # pragma: no cover - best effort cleanup
        pass
