"""Walk a DICOM file's bytes: re-read outputs for surviving identifiers, read inputs' identifiers.

The fail-closed check after every write (``write -> re-read -> verify -> rename``)
needs two things of the bytes on disk: that they parse as DICOM at every depth,
and that no identifier of the input survives anywhere in them. Parsing them with
pydicom builds a ``Dataset`` for every sequence item, which cost as much as the
whole header pass. :func:`scan_file` walks the bytes once instead: it checks the
preamble, the file meta group, every element's length and every sequence item
at every depth, and hands each searchable value to the record's
:class:`~dicomscrub.core.verify.DenyList` exactly as
:meth:`DenyList.find <dicomscrub.core.verify.DenyList.find>` does on a pydicom
dataset (same VRs, same character sets, same skipped tags, same locations).

It handles the common encodings only: explicit and implicit VR little endian,
explicit VR big endian, encapsulated pixel data, single-byte and UTF-8
character sets. Anything else (a deflated dataset, ISO 2022 code extensions, a
sequence encoded as UN, an undefined length where only a sequence may have one,
a length running past its container, sequences nested deeper than allowed, a
PatientIdentityRemoved that is not ``YES``) makes it return ``None``: the caller
then reads the file with pydicom, which either reads it or says precisely what
is wrong. So this module only ever makes the common case faster; it never
accepts what the pydicom path would refuse.

The same walk reads an input's identifying elements (:func:`input_identifiers`,
what :func:`~dicomscrub.core.verify.identifying_elements` gives on the pydicom
dataset) and checks its nesting depth, so that the engine need not decode every
sequence when it reads a file: sequences are decoded when the header step walks
into them, and a sequence the profile removes never is.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> from dicomscrub.core.pipeline import Engine
>>> from dicomscrub.core.verify import DenyList
>>> data = open(get_testdata_file("CT_small.dcm"), "rb").read()
>>> out, _ = Engine({"pixels": {"mode": "off"}}, secret="s").process_bytes(data)
>>> deny = DenyList.from_elements([("PatientName", "PN", ("CompressedSamples^CT1",))])
>>> scan_file(out, deny, max_depth=16), scan_file(out[:-2], deny, max_depth=16)
([], None)
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from pydicom.uid import UID

from .read import codec_for, decode_text, element_vr, keyword_of
from .verify import (
    BINARY_SEARCHED,
    GENERATED,
    IDENTIFIER_VRS,
    MAX_BINARY_SCAN,
    OWN_TAGS,
    SEARCHED_VRS,
    SKIPPED_TAGS,
    DenyList,
    Identifying,
    location,
    wanted_tags,
)

_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
#: Explicit VRs with a 2-byte reserved field and a 4-byte length.
_LONG = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT = frozenset(
    {
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    }
)  # fmt: skip
#: An explicit VR's two bytes: (VR, whether it has the 4-byte length form).
_EXPLICIT = {code: (code.decode(), code in _LONG) for code in _LONG | _SHORT}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_CHARSET = 0x00080005
_IDENTITY_REMOVED = 0x00120062
_SEPARATOR = "\x00"  # neither a word character nor a space: no phrase matches across it
#: Values longer than this are deferred by the engine's pydicom read (pipeline.DEFER_SIZE).
_DEFERRED = 1 << 16

#: Where a value sits: ``(sequence tag, item index)`` from the top; ``_META`` for the file meta.
Path = tuple[tuple[int, int], ...]
_META: Path = ((-1, -1),)


class _UsePydicomError(Exception):
    """The bytes need pydicom's reader (the caller falls back to it)."""


def scan_file(
    data: bytes | memoryview,
    deny: DenyList,
    original_uids: Iterable[str] = (),
    *,
    max_depth: int,
) -> list[str] | None:
    """Locations where ``deny`` matches in the DICOM file ``data``, or None to use pydicom.

    Parameters
    ----------
    data
        The whole file as written (preamble, ``DICM``, file meta, dataset).
    deny
        The original record's deny-list.
    original_uids
        The input's instance UIDs (searched in UI values); empty when UIDs are kept.
    max_depth
        Deepest allowed sequence nesting (a top-level sequence's items are depth 1).

    Returns
    -------
    list of str or None
        The locations ``deny.find`` reports for the file read by pydicom, in file
        order (an empty list: the file is well-formed and clean). None when the
        file is not plainly well-formed, uses an encoding left to pydicom, or its
        PatientIdentityRemoved is not ``YES``.
    """
    uids = frozenset(u for u in original_uids if u)
    try:
        return _OutputScan(bytes(data), max_depth, deny, uids).run()
    except (_UsePydicomError, struct.error, UnicodeDecodeError, LookupError):
        return None


def input_identifiers(data: bytes, *, max_depth: int) -> tuple[Identifying, ...] | None:
    """The identifying elements of an input file, read from its bytes, or None to use pydicom.

    The same ``(keyword, VR, values)`` as
    :func:`~dicomscrub.core.verify.identifying_elements` on the file read by pydicom,
    in the same order, and a check of the nesting depth: the engine then leaves the
    input's sequences undecoded until the header step needs them (a removed
    sequence is never decoded). None when the file is not plainly well-formed, nests
    deeper than ``max_depth``, holds elements encoded as ``UN`` (pydicom decodes
    those on reading) or needs pydicom to decode a value.

    >>> from pydicom.data import get_testdata_file
    >>> data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    >>> [keyword for keyword, vr, values in input_identifiers(data, max_depth=16)][:5]
    ['StudyDate', 'SeriesDate', 'AcquisitionDate', 'ContentDate', 'Manufacturer']
    """
    try:
        return _InputScan(data, max_depth).run()
    except (_UsePydicomError, struct.error, UnicodeDecodeError, LookupError):
        return None


class _Walker:
    """One walk over a DICOM file's bytes: its structure, each value handed to :meth:`_value`.

    Raises :class:`_UsePydicomError` for anything it does not plainly understand.
    """

    #: VRs whose values are handed to :meth:`_value`.
    read_vrs: frozenset[str] = frozenset()
    #: Skip the values inside sequences dicomscrub writes from constants (OWN_TAGS).
    mute_own = True
    #: Leave every element encoded as UN to pydicom (else only those it decodes as SQ).
    any_un = False

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.max_depth = max_depth
        self._byte_order("<")  # the file meta is always little endian
        self.implicit = False
        self.muted = 0  # inside a sequence dicomscrub writes from constants: parse, not search
        self.identity_removed = False

    def walk(self) -> None:
        data = self.data
        if len(data) < 144 or data[128:132] != b"DICM":
            raise _UsePydicomError
        syntax, start = self._meta(132)
        if syntax is None or syntax in _DEFLATED or not UID(syntax).is_transfer_syntax:
            raise _UsePydicomError
        self.implicit = syntax == _IMPLICIT_LE
        self._byte_order(">" if syntax == _EXPLICIT_BE else "<")
        if start >= len(data):
            raise _UsePydicomError  # no dataset after the file meta
        self._dataset(start, len(data), (), 0, "latin_1", delimited=False)

    def _meta(self, pos: int) -> tuple[str | None, int]:
        """Scan the file meta group; return its transfer syntax UID and where the dataset starts."""
        data, syntax = self.data, None
        while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
            tag, vr, length, value = self._header(pos, implicit=False)
            if length == _UNDEFINED or value + length > len(data):
                raise _UsePydicomError
            raw = data[value : value + length]
            if tag == 0x00020010:
                syntax = raw.decode("ascii").strip("\x00 ")
            self._meta_value(tag, vr, raw, value)
            pos = value + length
        return syntax, pos

    def _meta_value(self, tag: int, vr: str, raw: bytes, offset: int) -> None:
        """A file meta element (ignored unless a walk searches the file meta)."""

    def _value(self, path: Path, tag: int, vr: str, raw: bytes, codec: str, offset: int) -> None:
        """A value whose VR is in :attr:`read_vrs`."""

    def _header(self, pos: int, *, implicit: bool) -> tuple[int, str, int, int]:
        """``(tag, VR, length, value offset)`` of the element at ``pos`` (VR "" for items)."""
        group, element, length = self._tag_length.unpack_from(self.data, pos)
        tag = group << 16 | element
        if group == 0xFFFE or implicit:
            return tag, "" if group == 0xFFFE else element_vr(tag, None), length, pos + 8
        known = _EXPLICIT.get(self.data[pos + 4 : pos + 6])
        if known is None:
            raise _UsePydicomError  # not a VR pydicom writes: let pydicom judge it
        vr, long = known
        if vr == "UN":
            if self.any_un or element_vr(tag, "UN") == "SQ":
                raise _UsePydicomError  # pydicom decodes UN with the dictionary's VR (even as SQ)
            vr = element_vr(tag, "UN")
        if long:
            return tag, vr, self._long.unpack_from(self.data, pos + 8)[0], pos + 12
        return tag, vr, self._short.unpack_from(self.data, pos + 6)[0], pos + 8

    def _byte_order(self, prefix: str) -> None:
        self._tag_length = struct.Struct(prefix + "HHL")  # tag, and an item's or implicit length
        self._long = struct.Struct(prefix + "L")
        self._short = struct.Struct(prefix + "H")

    def _dataset(
        self, pos: int, end: int, path: Path, depth: int, codec: str, *, delimited: bool
    ) -> int:
        """Scan a dataset's elements from ``pos``; return where it ends.

        A ``delimited`` dataset (an item of undefined length) ends after its item
        delimiter, before ``end``; any other ends exactly at ``end``.
        """
        data, top, seen = self.data, depth == 0, False
        while pos < end:
            if end - pos < 8:
                raise _UsePydicomError
            tag, vr, length, value = self._header(pos, implicit=self.implicit)
            if tag == _ITEM_END and delimited and length == 0:
                return value
            if tag >> 16 in (0xFFFE, 0x0000, 0x0002):
                raise _UsePydicomError  # delimiters, command or meta elements out of place
            seen = True
            if length == _UNDEFINED:
                if tag == _PIXEL_DATA and not self.implicit:
                    pos = self._fragments(value, end)
                elif vr == "SQ":
                    pos = self._sequence(value, end, path, depth, tag, codec, defined=False)
                else:
                    raise _UsePydicomError  # pydicom would read an undefined length as a sequence
                continue
            pos = value + length
            if pos > end:
                raise _UsePydicomError
            if vr == "SQ":
                self._sequence(value, pos, path, depth, tag, codec, defined=True)
                continue
            if tag == _CHARSET:
                terms = data[value:pos].decode("ascii").split("\\")
                found = codec_for(tuple(terms))
                if found is None:
                    raise _UsePydicomError  # code extensions: pydicom decodes those
                codec = found
            elif tag < _CHARSET and vr in SEARCHED_VRS:
                raise _UsePydicomError  # text before the character set that applies to it
            elif top and tag == _IDENTITY_REMOVED:
                self.identity_removed = data[value:pos] in (b"YES ", b"YES")
            if vr in self.read_vrs and length and not self.muted and tag not in SKIPPED_TAGS:
                self._value(path, tag, vr, data[value:pos], codec, value)
        if delimited or pos != end or (top and not seen):
            raise _UsePydicomError
        return pos

    def _sequence(
        self, pos: int, end: int, path: Path, depth: int, tag: int, codec: str, *, defined: bool
    ) -> int:
        """Scan a sequence's items from ``pos``; return where the sequence ends.

        A ``defined`` sequence ends exactly at ``end``; an undefined one after its
        sequence delimiter, before ``end``.
        """
        if depth + 1 > self.max_depth:
            raise _UsePydicomError
        own = self.mute_own and tag in OWN_TAGS
        self.muted += own
        index = 0
        while not (defined and pos == end):
            if end - pos < 8:
                raise _UsePydicomError
            item, _, length, value = self._header(pos, implicit=True)
            if item == _SEQUENCE_END and not defined and length == 0:
                pos = value
                break
            if item != _ITEM:
                raise _UsePydicomError
            inner = (*path, (tag, index))
            if length == _UNDEFINED:
                pos = self._dataset(value, end, inner, depth + 1, codec, delimited=True)
            else:
                pos = value + length
                if pos > end:
                    raise _UsePydicomError
                self._dataset(value, pos, inner, depth + 1, codec, delimited=False)
            index += 1
        self.muted -= own
        return pos

    def _fragments(self, pos: int, end: int) -> int:
        """Skip encapsulated pixel data fragments; return where their delimiter ends."""
        while end - pos >= 8:
            tag, _, length, value = self._header(pos, implicit=True)
            if tag == _SEQUENCE_END and length == 0:
                return value
            if tag != _ITEM or length == _UNDEFINED or value + length > end:
                raise _UsePydicomError
            pos = value + length
        raise _UsePydicomError


class _OutputScan(_Walker):
    """The re-read of a written file: structure, PatientIdentityRemoved, deny-list hits."""

    def __init__(self, data: bytes, max_depth: int, deny: DenyList, uids: frozenset[str]) -> None:
        super().__init__(data, max_depth)
        self.deny = deny
        self.uids = uids
        self.read_vrs = frozenset(
            SEARCHED_VRS
            | ({"UI"} if uids else set())
            | (BINARY_SEARCHED if deny.parts is not None else set())
        )
        #: (offset, path, tag, text) of values searched at the end, one pass per matcher; the
        #: value's offset in the file orders the hits
        self.parts: list[tuple[int, Path, int, str]] = []
        self.whole: list[tuple[int, Path, int, str]] = []
        self.hits: list[tuple[int, Path, int]] = []

    def run(self) -> list[str]:
        self.walk()
        if not self.identity_removed:
            raise _UsePydicomError
        self._search()
        self.hits.sort(key=lambda hit: hit[0])
        return [_where(path, tag) for _, path, tag in self.hits]

    def _meta_value(self, tag: int, vr: str, raw: bytes, offset: int) -> None:
        if vr in self.read_vrs and raw:
            self._value(_META, tag, vr, raw, "latin_1", offset)

    def _value(self, path: Path, tag: int, vr: str, raw: bytes, codec: str, offset: int) -> None:
        """Queue or search one value as :meth:`DenyList.find` does (pixel data never comes)."""
        if tag in OWN_TAGS:
            return
        if vr in SEARCHED_VRS:
            queue = self.whole if vr == "CS" else self.parts
            queue.append((offset, path, tag, raw.decode(codec, "replace")))
        elif vr == "UI" and self.uids:
            values = {v.strip("\x00 ") for v in raw.decode("ascii", "replace").split("\\")}
            if values & self.uids:
                self.hits.append((offset, path, tag))
        elif (
            vr in BINARY_SEARCHED
            and self.deny.parts is not None
            and (tag & 0xFF00FFFF) != 0x60003000  # overlay bits are not text
            and self.deny.parts.search(raw[:MAX_BINARY_SCAN].decode("latin-1"))
        ):
            self.hits.append((offset, path, tag))

    def _search(self) -> None:
        """Search the queued texts: one pass over the ASCII ones, each again only on a match."""
        for queued, matcher in ((self.parts, self.deny.parts), (self.whole, self.deny.whole)):
            if matcher is None or not queued:
                continue
            ascii_ = [q for q in queued if q[3].isascii()]
            others = [q for q in queued if not q[3].isascii()]  # case mapping can change lengths
            joined = _SEPARATOR.join(q[3] for q in ascii_)
            candidates = ascii_ if matcher.search(GENERATED.sub(" ", joined)) else []
            for order, path, tag, text in (*candidates, *others):
                if matcher.search(GENERATED.sub(" ", text)):
                    self.hits.append((order, path, tag))


class _InputScan(_Walker):
    """The read of an input: structure, nesting depth, the identifying elements."""

    read_vrs = IDENTIFIER_VRS  # person names (PN) included
    mute_own = False  # an input's sequences are the input's, whatever their tag
    any_un = True  # reading an input, pydicom decodes UN elements (the writer then differs)

    def __init__(self, data: bytes, max_depth: int) -> None:
        super().__init__(data, max_depth)
        self.wanted = wanted_tags()
        self.found: list[Identifying] = []

    def run(self) -> tuple[Identifying, ...]:
        self.walk()
        return tuple(self.found)

    def _value(self, path: Path, tag: int, vr: str, raw: bytes, codec: str, offset: int) -> None:
        """Collect a person name or identifying value as ``identifying_elements`` does."""
        if vr != "PN" and tag not in self.wanted:
            return
        if len(raw) > _DEFERRED:
            raise _UsePydicomError  # pydicom reads values this long itself (deferred)
        values = decode_text(raw, vr, codec)
        if values is None:
            raise _UsePydicomError  # pydicom decodes this one (escape sequences)
        if values:
            self.found.append((keyword_of(tag), vr, tuple(values)))


def _where(path: Path, tag: int) -> str:
    """The location :meth:`DenyList.find` reports: ``Outer[0].Inner[2].Keyword``."""
    if path == _META:
        return location("FileMeta", tag)
    prefix = ""
    for parent, index in path:
        prefix = location(prefix, parent) + f"[{index}]"
    return location(prefix, tag)
