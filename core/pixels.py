"""Burned-in PHI in the pixels: decode, find text, classify, mask, re-encode.

:func:`redact_pixels` is the entry point the file pipeline calls for every
dataset with pixel data. Per file:

1. **check** the declared size (Rows x Columns x Frames x Samples) against
   ``policy.pixels.max_pixels`` before anything is decoded;
2. **decode** every frame with pydicom's decoders (pylibjpeg, pyjpegls) into the
   stored values, without colour conversion where it can be avoided;
3. build an 8-bit **view** per frame for OCR only (robust percentiles,
   MONOCHROME1 inverted, colour and palette to grey); the view is never written;
4. **propose** text lines on every frame (:mod:`.text_regions`) and **read**
   only those regions, all frames in one OCR call, reading regions that repeat
   identically across frames once (:mod:`.ocr`);
5. **classify** the OCR text of each frame with the shared text detector
   (``phi`` mode) or take every word (``all_text`` mode), plus the policy's
   fixed regions for matching devices;
6. **mask** padded boxes in the stored values with a fill taken from the box's
   surroundings (so it reads as background, MONOCHROME1 included), zero
   overlay bits hidden above HighBit, and clean overlay planes when the policy
   cleans graphics;
7. **encode** (:mod:`.encode`) only when a value changed.

Any failure raises :class:`DeidError` so the file is not written (fail closed).

Examples
--------
>>> import numpy as np
>>> from pydicom.dataset import Dataset
>>> ds = Dataset()
>>> ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.NumberOfFrames = 2048, 2048, 1, 200
>>> try:
...     check_declared_size(ds, 100_000_000)
... except DeidError as exc:
...     print(exc.code.value)
too_many_pixels
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import UID
from scipy import ndimage

from .encode import encode_pixels
from .errors import DeidError, ErrorCode, is_library_failure, quiet_codec_logs
from .ocr import CROP_PAD, ROTATED_LINE_OFFSET, OcrBackend, Word, get_backend, read_regions
from .policy import FixedRegion, Policy
from .results import Detector, Entity
from .text_patterns import DATE_GROUP, OCR_DIGITS, month_like
from .text_regions import (
    STROKE,
    FrameChange,
    Region,
    frame_change,
    pool_factor,
    propose_text_regions,
    stroke_contrast,
    transpose,
)

PIXEL_TAG = "(7FE0,0010)"
#: NER-only spans are masked when OCR read their words at least this confidently; deny-list and
#: pattern spans are masked whatever the OCR confidence.
MIN_NER_OCR_CONFIDENCE = 0.7
#: Words of a PHI span's line read below this confidence are taken to be part of the caption.
GARBLED_CONFIDENCE = 0.6
#: Institution names and addresses fill their caption line: mask the whole line when a span of
#: these types hits it (the detector may match only the distinctive word of a name).
WHOLE_LINE_TYPES = frozenset({"ORG", "LOCATION"})
Box = tuple[int, int, int, int]


class SpanLike(Protocol):
    """What the pixel step needs from a detected span (``text_detect.Span``)."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def entity_type(self) -> str: ...
    @property
    def detector(self) -> str: ...
    @property
    def confidence(self) -> float: ...


class TextDetector(Protocol):
    """What the pixel step needs from the shared text detector (``text_detect.TextDetector``)."""

    def detect(self, text: str, *, ocr: bool = False) -> Sequence[SpanLike]: ...


@dataclass
class PixelOutcome:
    """What :func:`redact_pixels` did to one dataset.

    Attributes
    ----------
    entities
        One record per masked box per frame (and per cleaned overlay box).
    changed
        Whether any stored pixel or overlay value changed.
    frames
        Number of frames scanned.
    """

    entities: list[Entity] = field(default_factory=list)
    changed: bool = False
    frames: int = 0


@dataclass
class Decoded:
    """Every frame of a dataset in its stored values.

    Attributes
    ----------
    frames
        ``(frames, rows, columns)`` or ``(frames, rows, columns, samples)``.
    photometric
        PhotometricInterpretation of ``frames`` (``RGB`` after a JPEG 2000
        colour transform was undone, ``YBR_FULL`` after upsampling
        ``YBR_FULL_422``).
    source
        The transfer syntax the pixels came from.
    """

    frames: NDArray[Any]
    photometric: str
    source: UID


# --- decode -----------------------------------------------------------------------------------


def frame_count(ds: Dataset) -> int:
    """Number of frames the dataset declares (1 when NumberOfFrames is absent or empty)."""
    value = ds.get("NumberOfFrames")
    try:
        return max(1, int(value)) if value not in (None, "") else 1
    except (TypeError, ValueError):
        raise DeidError(ErrorCode.INVALID_VALUE, "NumberOfFrames is not a number") from None


def check_declared_size(ds: Dataset, max_pixels: int) -> int:
    """Raise ``too_many_pixels`` when the declared pixel count exceeds ``max_pixels``.

    Returns the declared count (Rows x Columns x Frames x SamplesPerPixel).
    """
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        raise DeidError(
            ErrorCode.DECODE_FAILED, "Rows, Columns or SamplesPerPixel missing or invalid"
        ) from None
    total = rows * cols * frame_count(ds) * samples
    if total > max_pixels:
        raise DeidError(
            ErrorCode.TOO_MANY_PIXELS,
            f"declared {total} pixel values exceed the cap of {max_pixels}",
        )
    return total


def decode(ds: Dataset) -> Decoded:
    """Decode every frame of ``ds`` into its stored values.

    Colour stays in the stored colour space where the codec allows
    (``as_rgb=False``); JPEG 2000 multi-component transforms come back as RGB.

    Raises
    ------
    DeidError
        ``unsupported_transfer_syntax`` when no installed decoder handles the
        transfer syntax, ``decode_failed`` when decoding fails.
    """
    from pydicom.pixels.decoders.base import get_decoder

    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if not ts:
        ts = UID("1.2.840.10008.1.2.1") if not ds.is_implicit_VR else UID("1.2.840.10008.1.2")
    if "PixelData" not in ds:
        raise DeidError(ErrorCode.DECODE_FAILED, "no (7FE0,0010) Pixel Data")
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise DeidError(
            ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX, f"no decoder for transfer syntax {ts}"
        ) from None
    if not decoder.is_available:
        raise DeidError(
            ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX, f"no installed decoder for {ts.name}"
        )
    try:
        options: Any = {"as_rgb": False}  # keep the stored colour space
        with quiet_codec_logs():  # the failure is reported below, as decode_failed
            array, info = decoder.as_array(ds, **options)
    except BaseException as exc:
        if not is_library_failure(exc):
            raise
        raise DeidError(
            ErrorCode.DECODE_FAILED, f"cannot decode {ts.name} ({type(exc).__name__})"
        ) from None
    photometric = str(info.get("photometric_interpretation", ds.PhotometricInterpretation))
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if info.get("number_of_frames", frame_count(ds)) == 1 or array.ndim == (
        2 if samples == 1 else 3
    ):
        array = array[np.newaxis]
    if photometric in ("YBR_FULL_422", "YBR_PARTIAL_422") and array.ndim == 4:
        photometric = "YBR_FULL" if photometric == "YBR_FULL_422" else "YBR_PARTIAL_420"
        if photometric == "YBR_PARTIAL_420":
            raise DeidError(
                ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX, "YBR_PARTIAL_422 is not supported"
            )
    return Decoded(array, photometric, ts)


# --- the 8-bit view for OCR --------------------------------------------------------------------


def grey_frames(ds: Dataset, decoded: Decoded) -> NDArray[Any]:
    """One grey value per pixel, per frame, in integers where the data are integers.

    Colour becomes the brightest channel (coloured annotations stay bright):
    RGB directly, YBR through an integer YCbCr-to-RGB transform, palette
    colour through a table of each index's brightest channel.

    Examples
    --------
    >>> from pydicom.uid import RLELossless
    >>> ybr = np.array([[[[128, 128, 128], [76, 85, 255]]]], np.uint8)   # grey, red
    >>> grey_frames(Dataset(), Decoded(ybr, "YBR_FULL", RLELossless)).tolist()
    [[[128, 254]]]
    """
    frames = decoded.frames
    pi = decoded.photometric
    if pi == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        count = 1 << (8 * frames.dtype.itemsize)
        table = apply_color_lut(np.arange(count, dtype=frames.dtype), ds).max(axis=-1)
        return np.asarray(table[frames])
    if frames.ndim == 4 and pi.startswith("YBR") and frames.dtype == np.uint8:
        return _ybr_brightest(frames)
    if frames.ndim == 4 and pi.startswith("YBR"):
        from pydicom.pixels.processing import convert_color_space

        rgb = np.stack([convert_color_space(f, pi, "RGB") for f in frames])
        return np.asarray(rgb.max(axis=-1), dtype=np.float32)
    if frames.ndim == 4:  # channel by channel: a reduction over the short last axis is slow
        return np.asarray(np.maximum(np.maximum(frames[..., 0], frames[..., 1]), frames[..., 2]))
    return frames


def _ybr_brightest(frames: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """max(R, G, B) of 8-bit YBR_FULL pixels (ITU-R BT.601 full range), in integers."""
    y = frames[..., 0].astype(np.int16)
    cb = frames[..., 1].astype(np.int16) - 128
    cr = frames[..., 2].astype(np.int16) - 128
    # R = Y + 1.402 Cr, G = Y - 0.344 Cb - 0.714 Cr, B = Y + 1.772 Cb (coefficients x 64)
    red = (90 * cr) >> 6
    green = -(22 * cb + 46 * cr) >> 6
    blue = (113 * cb) >> 6
    top = np.maximum(np.maximum(red, green), blue)
    return np.asarray(np.clip(y + top, 0, 255), dtype=np.uint8)


#: Pixel values sampled (over frames and rows) to set the view's grey window.
WINDOW_SAMPLE = 250_000


def ocr_views(ds: Dataset, decoded: Decoded) -> NDArray[np.uint8]:
    """Return an 8-bit view of every frame, for OCR only (never written).

    Grey levels are stretched between robust percentiles (0.5 and 99.5) taken
    over all frames (so a caption that repeats on every frame looks the same on
    every frame); MONOCHROME1 is inverted so the view looks as displayed.
    Integer data go through a lookup table (one gather, no float maths).

    Examples
    --------
    >>> from pydicom.uid import ExplicitVRLittleEndian
    >>> d = Decoded(np.array([[[0, 1000], [3000, 4095]]], np.uint16), "MONOCHROME1",
    ...             ExplicitVRLittleEndian)
    >>> ocr_views(Dataset(), d)[0].tolist()
    [[255, 193], [69, 0]]
    """
    grey = grey_frames(ds, decoded)
    count = grey.shape[0]
    frame_step = max(1, int(np.ceil(count * grey[0].size / WINDOW_SAMPLE / 4)))
    frame_step = min(frame_step, max(1, count // 4)) if count > 4 else 1
    picked = grey[::frame_step]
    step = max(1, int(np.ceil(np.sqrt(picked.size / WINDOW_SAMPLE))))
    sample = picked[:, ::step, ::step]
    integer = grey.dtype.kind in "ui" and grey.dtype.itemsize <= 2
    lo, hi = _percentiles(sample, integer)
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        hi = lo + 1.0
    invert = decoded.photometric == "MONOCHROME1"
    if integer:
        # A lookup table over every possible stored value: one gather instead of float math.
        base = int(np.iinfo(grey.dtype).min)
        values = np.arange(base, int(np.iinfo(grey.dtype).max) + 1, dtype=np.float32)
        lut = np.clip((values - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        if invert:
            lut = 255 - lut
        index = grey.astype(np.int32) - base if base else grey
        return np.asarray(np.take(lut, index), dtype=np.uint8)
    scaled = (grey.astype(np.float32) - lo) * (255.0 / (hi - lo))
    view: NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8)
    if invert:
        view = np.asarray(255 - view, dtype=np.uint8)
    return view


def _percentiles(sample: NDArray[Any], integer: bool) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles of ``sample`` (a histogram for integers: no sort)."""
    if not integer:
        lo, hi = np.percentile(sample, (0.5, 99.5))
        return float(lo), float(hi)
    values = sample.ravel()
    base = int(values.min()) if values.dtype.kind == "i" else 0
    counts = np.cumsum(np.bincount(values.astype(np.int64) - base if base else values))
    total = int(counts[-1])
    # the sample ranked floor(0.5%) from the bottom and ceil(99.5%): the window errs wide
    lo = int(np.searchsorted(counts, np.floor(0.005 * (total - 1)), side="right"))
    hi = int(np.searchsorted(counts, np.ceil(0.995 * (total - 1)), side="right"))
    return float(lo + base), float(hi + base)


# --- find and classify text --------------------------------------------------------------------


@dataclass
class FrameText:
    """The OCR lines of one frame: words grouped by line, in reading order.

    ``regions[i]`` is the proposed region (view box) line ``i`` was read from.
    """

    lines: list[list[Word]]
    regions: list[Box] = field(default_factory=list)
    #: ``turned[i]``: line ``i`` was read turned by 90 degrees (rotated text); its words are
    #: in reading order, down or up the image. Empty: no line was.
    turned: list[bool] = field(default_factory=list)

    def text(self) -> tuple[str, list[tuple[int, int, Word]]]:
        """The frame's text and each word's character range.

        Lines side by side on one row of the image ("DOE" and "JANE" read as
        two regions) are joined left to right with a space, rows with a newline,
        so the detector sees a caption as it is displayed.
        """
        parts: list[str] = []
        offsets: list[tuple[int, int, Word]] = []
        pos = 0
        for row in self.rows():
            words = [w for line in row for w in line]
            for i, word in enumerate(words):
                if i:
                    # Far-apart captions on one row are separate phrases.
                    prev = words[i - 1]
                    far = word.box[0] - (prev.box[0] + prev.box[2]) > 3 * max(prev.box[3], 8)
                    parts.append("\n" if far else " ")
                    pos += 1
                offsets.append((pos, pos + len(word.text), word))
                parts.append(word.text)
                pos += len(word.text)
            parts.append("\n")
            pos += 1
        return "".join(parts), offsets

    def rows(self) -> list[list[list[Word]]]:
        """Lines grouped into image rows (vertical overlap over half a line), left to right.

        A line read turned (rotated text) is a row of its own: it runs across the
        rows of the horizontal lines beside it.
        """
        rows: list[tuple[int, int, list[list[Word]]]] = []
        flags = self.turned or [False] * len(self.lines)
        turned = {id(ln) for ln, t in zip(self.lines, flags, strict=True) if t}
        for line in sorted(self.lines, key=lambda ln: min(w.box[1] for w in ln)):
            top = min(w.box[1] for w in line)
            bottom = max(w.box[1] + w.box[3] for w in line)
            if id(line) in turned:
                rows.append((top, bottom, [line]))
                continue
            for i, (rt, rb, members) in enumerate(rows):
                if id(members[0]) in turned:
                    continue
                if min(bottom, rb) - max(top, rt) >= 0.5 * min(bottom - top, rb - rt):
                    members.append(line)
                    rows[i] = (min(rt, top), max(rb, bottom), members)
                    break
            else:
                rows.append((top, bottom, [line]))
        return [sorted(members, key=lambda ln: ln[0].box[0]) for _, _, members in rows]


def _same_crop(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> bool:
    """Whether two view crops show the same thing (tolerating codec noise).

    Examples
    --------
    >>> a = np.zeros((10, 30), np.uint8); b = a.copy(); b[2:8, 5] = 200   # one new stroke
    >>> _same_crop(a, a + 1), _same_crop(a, b)
    (True, False)
    """
    if a.shape != b.shape:
        return False
    if np.array_equal(a, b):
        return True
    diff = np.maximum(a, b) - np.minimum(a, b)
    return bool(diff.mean() < 2.0 and np.count_nonzero(diff > 48) <= 2)


def _same_text(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> bool:
    """Whether crop ``b`` shows the glyphs of crop ``a``, and no others, over any background.

    A caption over moving anatomy: its ink (the pixels beyond the midpoint
    between ``a``'s background and its extreme) keeps its values, and nothing
    outside that ink (grown by a pixel) reaches the ink's side of the midpoint.

    Examples
    --------
    >>> a = np.zeros((12, 30), np.uint8); a[3:9, 4:26:3] = 250          # glyph strokes
    >>> b = a.copy(); b[:, :] = np.where(a > 0, 250, 60)               # a lighter background
    >>> c = a.copy(); c[3:9, 28] = 250                                  # one more stroke
    >>> _same_text(a, b), _same_text(a, c)
    (True, False)
    """
    if a.shape != b.shape or a.size == 0:
        return False
    background = int(np.median(a))
    high, low = int(a.max()), int(a.min())
    if high - background >= background - low:
        threshold = (background + high) // 2
        ink, other = a > threshold, b > threshold
    else:
        threshold = (background + low) // 2
        ink, other = a < threshold, b < threshold
    if np.count_nonzero(ink) < 4 or abs(high - low) < 32:
        return False
    drift = np.abs(a[ink].astype(np.int16) - b[ink].astype(np.int16))
    if np.count_nonzero(drift > 24) > 2:
        return False
    halo = ndimage.binary_dilation(ink)
    return not np.any(other & ~halo)


@dataclass
class _Track:
    """A proposed region and the distinct crops of it read so far (with their reading index)."""

    region: Region
    crops: list[tuple[NDArray[np.uint8], int]] = field(default_factory=list)
    texty: bool = False


class _FrameReader:
    """Reads every frame of a multi-frame view while reading each distinct crop once.

    Frame 0 is searched whole. Every later frame is compared with what each
    16-pixel cell looked like when it was last searched; the cells that
    changed (with a margin for context) are searched again, so text that
    appears, moves, changes or fades in on any frame is proposed on that
    frame. A region whose cells did not change keeps its reading from the
    previous frame. Each proposal is read on its frame unless the same crop
    (or the same glyphs over another background) was read before. Then every
    region that held text on some frame is read on every frame where its
    pixels differ from what was read, so a caption that dims or changes is
    read again where it changed. At most two OCR calls, whatever the frame
    count: the OCR cost follows the distinct captions, not the frames.
    """

    def __init__(self, views: NDArray[np.uint8], *, rotated: bool) -> None:
        self.views = views
        self.rotated = rotated
        self.pool = pool_factor(views.shape[1:3])
        self.tracks: dict[tuple[Box, bool], _Track] = {}
        self.items: list[tuple[NDArray[np.uint8], Region]] = []
        self.words: list[list[Word]] = []
        self.status: list[dict[tuple[Box, bool], int]] = []

    def _crop(self, frame: int, box: Box) -> NDArray[np.uint8]:
        x, y, w, h = box
        pad = CROP_PAD
        return self.views[frame, max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad]

    def _request(self, frame: int, track: _Track) -> int:
        """Index of the reading of ``track`` on ``frame`` (queued for OCR when new)."""
        crop = self._crop(frame, track.region.box)
        for seen, index in track.crops:
            if _same_crop(seen, crop) or _same_text(seen, crop):
                return index
        index = len(self.items)
        self.items.append((self.views[frame], track.region))
        track.crops.append((crop, index))
        return index

    def _read(self, backend: OcrBackend) -> None:
        pending = self.items[len(self.words) :]
        if pending:
            self.words.extend(read_regions(backend, pending))

    def _snap(self, region: Region) -> Region:
        """Grow ``region`` over the tracked regions it continues on its line.

        The same caption is proposed with slightly different boxes on different
        frames (a counter "9/40" then "10/40"): one box for all of them means
        one region read per distinct content, not every variant on every frame.
        """
        box = region.box
        grown = True
        while grown:
            grown = False
            for other, rotated in self.tracks:
                if rotated == region.rotated and other != box and _one_line(box, other, rotated):
                    union = _union([box, other])
                    grown = union != box
                    box = union
        return region if box == region.box else replace(region, box=box)

    def _propose(self, frame: int, change: FrameChange | None) -> list[Region]:
        view = self.views[frame]
        if change is None:
            return propose_text_regions(view, rotated=self.rotated, pool=self.pool)
        found: dict[tuple[Box, bool], Region] = {}
        for x0, y0, w, h in change.areas():
            piece = view[y0 : y0 + h, x0 : x0 + w]
            for r in propose_text_regions(piece, rotated=self.rotated, pool=self.pool):
                x, y, rw, rh = r.box
                region = replace(r, box=(x + x0, y + y0, rw, rh))
                if change.touches(region.box):
                    found.setdefault((region.box, region.rotated), region)
        return list(found.values())

    def run(self, backend: OcrBackend) -> list[FrameText]:
        count = self.views.shape[0]
        searched = self.views[0].copy()
        for frame in range(count):
            change = None if frame == 0 else frame_change(searched, self.views[frame])
            if change is not None and change.any():
                b = change.block
                cells = np.repeat(np.repeat(change.cells, b, axis=0), b, axis=1)
                changed = cells[: searched.shape[0], : searched.shape[1]]
                np.copyto(searched, self.views[frame], where=changed)
            status: dict[tuple[Box, bool], int] = {}
            if change is None or change.any():
                for found in self._propose(frame, change):
                    region = self._snap(found)
                    key = (region.box, region.rotated)
                    track = self.tracks.setdefault(key, _Track(region))
                    status[key] = self._request(frame, track)
            if change is not None:
                previous = self.status[frame - 1]
                for key, index in previous.items():
                    if key not in status and not change.touches(key[0]):
                        status[key] = index  # its pixels did not change since the last frame
            self.status.append(status)
        self._read(backend)
        for status in self.status:
            for key, index in status.items():
                if not self.tracks[key].texty and any(_is_text(w) for w in self.words[index]):
                    self.tracks[key].texty = True
        for frame, status in enumerate(self.status):
            read_here = [k[0] for k in status]
            for key, track in self.tracks.items():
                if track.texty and key not in status:
                    if any(_covers(box, key[0]) for box in read_here):
                        continue  # a larger region read on this frame holds it
                    status[key] = self._request(frame, track)
        self._read(backend)
        frames: list[FrameText] = []
        for status in self.status:
            keys = sorted(status, key=lambda k: (k[0][1], k[0][0]))
            frames.append(
                _frame_text(
                    [self.words[status[k]] for k in keys], [self.tracks[k].region for k in keys]
                )
            )
        return frames


def _one_line(a: Box, b: Box, rotated: bool) -> bool:
    """Whether two boxes overlap on one text line (columns for rotated text)."""
    if rotated:
        a, b = (a[1], a[0], a[3], a[2]), (b[1], b[0], b[3], b[2])
    across = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    down = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    height = max(a[1] + a[3], b[1] + b[3]) - min(a[1], b[1])
    return across > 0 and down >= 0.5 * min(a[3], b[3]) and height <= 1.3 * max(a[3], b[3])


def read_text(
    views: NDArray[np.uint8], backend: OcrBackend, *, rotated: bool = True
) -> list[FrameText]:
    """Find and read the text of every frame; group words into lines.

    One frame: propose, read every region in one OCR call. Several frames
    (cine, multi-frame): every frame is searched where its pixels changed
    and each distinct crop is read once (see :class:`_FrameReader`).
    """
    if views.shape[0] == 1:
        regions = propose_text_regions(views[0], rotated=rotated)
        readings = read_regions(backend, [(views[0], r) for r in regions])
        return [_frame_text(readings, regions)]
    return _FrameReader(views, rotated=rotated).run(backend)


def _frame_text(readings: list[list[Word]], regions: list[Region]) -> FrameText:
    """Group one frame's words into lines (per region and OCR line), in reading order."""
    found: list[tuple[list[Word], Box, bool]] = []
    for words, region in zip(readings, regions, strict=True):
        by_line: dict[int, list[Word]] = {}
        for word in words:
            by_line.setdefault(word.line, []).append(word)
        for number, ws in by_line.items():
            # a reading turned by 90 degrees comes in reading order (down or up the image);
            # an unturned one is ordered left to right
            turned = region.rotated and number < 2 * ROTATED_LINE_OFFSET
            found.append((ws if turned else sorted(ws, key=lambda w: w.box[0]), region.box, turned))
    found.sort(key=lambda item: (min(w.box[1] for w in item[0]), min(w.box[0] for w in item[0])))
    return FrameText([f[0] for f in found], [f[1] for f in found], [f[2] for f in found])


@dataclass(frozen=True)
class Finding:
    """A box to mask on one frame, with what it holds."""

    frame: int
    box: Box
    entity_type: str
    detector: Detector
    confidence: float
    text: str


def _is_text(word: Word) -> bool:
    """A real word for ``all_text`` mode: letters or digits read with some confidence."""
    alnum = sum(c.isalnum() for c in word.text)
    return alnum >= 1 and (word.confidence >= 0.5 or (alnum >= 2 and word.confidence >= 0.3))


def classify(
    frames: list[FrameText],
    detector: TextDetector | None,
    *,
    mode: str,
    views: NDArray[np.uint8] | None = None,
) -> list[Finding]:
    """Decide what to mask on each frame.

    ``all_text``: every line holding at least one real word, as the union of
    its words and its proposed region, and whatever ``phi`` mode finds besides
    (the record's name read with too little confidence to count as a word is
    still masked). ``phi``: the words each detected span
    covers, one box per span and line, stretched to the region's edge when the
    span reaches the first or last word of the line (OCR boxes can be a glyph
    short of the ink). With the frames' OCR ``views``, a box that ends its line
    also takes in glyph ink that continues the line past the proposed region
    (:func:`ink_beyond`: the last "T" of "SCOTT" that the proposal left out).
    """
    findings: list[Finding] = []
    seen: set[tuple[int, Box, str]] = set()  # a box is masked (and recorded) once per frame
    cache: dict[str, Sequence[SpanLike]] = {}
    for index, frame in enumerate(frames):
        view = views[index] if views is not None else None
        if mode == "all_text":
            for line, region in zip(frame.lines, frame.regions, strict=True):
                real = [w for w in line if _is_text(w)]
                if real:
                    box = _union([region, *(w.box for w in line)])
                    box = _stretch(box, line, line, region, view)
                    confidence = max(w.confidence for w in real)
                    text = " ".join(w.text for w in line)
                    findings.append(Finding(index, box, "TEXT", "ocr", round(confidence, 3), text))
            # and what phi mode masks: PHI read with too little confidence to count as text
            # above (tesseract gives "NGUYEN*SHEILA" 0.0) is still the record's name
        text, offsets = frame.text()
        if detector is None or not text.strip():
            continue
        spans = cache.get(text)
        if spans is None:
            spans = cache[text] = list(detector.detect(text, ocr=True))
        for span in spans:
            hit = [w for s, e, w in offsets if s < span.end and e > span.start]
            for line, region in zip(frame.lines, frame.regions, strict=True):
                group = [w for w in line if any(w is h for h in hit)]
                if not group:
                    continue
                if span.detector == "ner" and not _plausible_words(group):
                    continue  # NER on OCR noise (speckle, anatomy edges read as letters)
                if span.entity_type == "PERSON":
                    group = _with_title(group, line)
                if _rest_garbled(group, line):
                    group = list(line)
                targets = [(group, line, region)]
                if span.entity_type in WHOLE_LINE_TYPES:
                    # "Memorial Hospital" after a matched "Richard": the whole caption, including
                    # pieces of it read as neighbouring lines on the same row.
                    targets = [(ln, ln, rg) for ln, rg in _caption(frame, line, region)]
                # a piece of a rotated caption can be as wide as tall ("Hi" of "Hill Medical
                # Center" running down): it runs the way the span's own line runs
                down = _runs_down(region)
                for words, owner, area in targets:
                    box = _union([w.box for w in words])
                    box = _stretch(box, words, owner, area, view, down=down)
                    if (index, box, span.entity_type) in seen:
                        continue
                    seen.add((index, box, span.entity_type))
                    confidence = min(span.confidence, min(w.confidence for w in words))
                    findings.append(
                        Finding(
                            index,
                            box,
                            span.entity_type,
                            "ocr",
                            round(float(confidence), 3),
                            text[span.start : span.end],
                        )
                    )
        covered = {
            id(w): span.entity_type == "DATE"
            for s, e, w in offsets
            for span in spans
            if s < span.end and e > span.start
        }
        # dates read as one word or split into up to four at a separator or a month name,
        # no other span's words among them (a split may run over two lines of one row: the
        # finder cut the row at the space)
        owners = {
            id(w): (line, region)
            for line, region in zip(frame.lines, frame.regions, strict=True)
            for w in line
        }
        for row in frame.rows():
            for group in _dates_in([w for line in row for w in line], covered):
                text_read = " ".join(w.text for w in group)
                for line, region in {id(owners[id(w)][0]): owners[id(w)] for w in group}.values():
                    part = [w for w in group if any(w is x for x in line)]
                    box = _stretch(_union([w.box for w in part]), part, line, region, view)
                    conf = round(float(min(w.confidence for w in part)), 3)
                    findings.append(Finding(index, box, "DATE", "ocr", conf, text_read))
    if mode == "all_text":  # a PHI box inside a masked line is that line's (one record)
        lines = [f for f in findings if f.entity_type == "TEXT"]
        findings = [
            f
            for f in findings
            if f.entity_type == "TEXT"
            or not any(t.frame == f.frame and _inside(f.box, t.box) for t in lines)
        ]
    return findings


def _inside(inner: Box, outer: Box) -> bool:
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


#: A date whatever OCR did to its digits ("07/15/2618" for 07/15/2018 in a dotted-zero font).
_DATE_SHAPE = re.compile(r"\d{1,2}[/.-]\d{1,2}[/.-](\d{2}|\d{4})|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}")
#: Day, three characters, year: a month-name date when the three are a month but one.
_MONTH_DATE_SHAPE = re.compile(
    r"([\dOoQDIl|]{1,2})[-.\d]?([A-Za-z\d]{3})[-.]?(\d{2}|[\dOoQDIl|]{4})"
)
#: A numeric date with letters for some digits ("O1/O5/2O24"): read as digits when it
#: has at least four real ones.
_LETTERED_DATE = re.compile(r"[\dOoQDIl|]{1,4}(?:[/.-][\dOoQDIl|]{1,4}){2}")
_DATE_SEPARATORS = "/.,-"


def _dates_in(words: list[Word], covered: dict[int, bool]) -> Iterator[list[Word]]:
    """Words of one row (left to right) that are a date (:func:`_date_shaped`), alone or as
    up to four words close together, split at a separator or beside a month name
    (``01/05/ 2024``, ``Dec 16.2017``: OCR read a space).

    ``covered`` maps the words a detector span covers to whether that span is a date: a
    date's words may join a date span's (``10`` before a found ``-MAR - 1988``), no other
    span's; a group that is all date span is not repeated.

    >>> row = [Word(t, (40 * i, 0, 36, 12), 0.9) for i, t in enumerate(("DOB", "01/05/", "2O24"))]
    >>> [[w.text for w in g] for g in _dates_in(row, {})]
    [['01/05/', '2O24']]
    >>> row = [Word(t, (30 * i, 0, 26, 12), 0.9) for i, t in enumerate(("10", "-MAR", "-", "1988"))]
    >>> [[w.text for w in g] for g in _dates_in(row, {id(w): True for w in row[1:]})]
    [['10', '-MAR', '-', '1988']]
    """
    i = 0
    while i < len(words):
        for size in (4, 3, 2, 1):
            group = words[i : i + size]
            flags = [covered.get(id(w)) for w in group]
            if len(group) < size or False in flags or all(flags):
                continue  # a word of another span, or a date span already masked
            joined = _joined(group)
            if joined is not None and _date_shaped(joined):
                yield group
                i += size
                break
        else:
            i += 1


def _joined(group: list[Word]) -> str | None:
    """The words of ``group`` as one date's text, or None when they cannot be one: each
    next word close (two line heights) and a separator or a month name where they meet."""
    text = group[0].text
    for a, b in itertools.pairwise(group):
        if b.box[0] - (a.box[0] + a.box[2]) > 2 * max(a.box[3], b.box[3]):
            return None
        if a.text[-1:] in _DATE_SEPARATORS or b.text[:1] in _DATE_SEPARATORS:
            text += b.text
        elif month_like(a.text.strip(",.")) or month_like(b.text.strip(",.")):
            text += " " + b.text
        else:
            return None
    return text


def _loose_date(text: str) -> bool:
    """Three groups of a date between any separators but ``:`` (times stay times): day,
    month and year in digits (letters OCR reads for digits, and ``@`` for 0, allowed in a
    group that has a real digit; four real digits in all), or a day, a month name
    (:func:`~dicomscrub.core.text_patterns.month_like`) and a year in any order. The day is
    not checked: OCR misreads it.

    >>> [_loose_date(t) for t in ("69,.87,2013", "Dec 16.2017", "Jul 99,2013", "@9-JUL-2013")]
    [True, True, True, True]
    >>> _loose_date("Sep 09,199"), _loose_date("09.09.199")  # a year's digit lost
    (True, False)
    >>> [_loose_date(t) for t in ("12:30:15", "1.5, 2.0", "Se 2 Im 5", "MAR 10", "WW 400 WL 40")]
    [False, False, False, False, False]
    >>> _loose_date("12.3 mGy"), _loose_date("Jus 09,2013")  # a month one letter off: 4-digit year
    (False, True)
    >>> _loose_date("OF/09/2013"), _loose_date("OF/SE/2013"), _loose_date("AB/09/2013")
    (True, False, False)
    """
    if ":" in text:
        return False
    groups = DATE_GROUP.findall(text.replace("@", "0"))
    if len(groups) != 3:
        return False
    months = [g for g in groups if month_like(g)]
    numbers = [g for g in groups if g not in months]
    lettered = [g for g in numbers if not _OCR_GROUP.fullmatch(g)]
    if lettered and (months or len(lettered) > 1 or not _LETTER_GROUP.fullmatch(lettered[0])):
        return False  # one day or month may be all letters ("OF" for 07), nothing else
    if not months:
        first, second, third = (len(g) for g in numbers)
        real = sum(ch.isdigit() for g in numbers for ch in g)
        return real >= 4 and (
            (first <= 2 and second <= 2 and third in (2, 4))
            or (first == 4 and second <= 2 and third <= 2)
        )
    if len(months) != 1:
        return False
    day, year = sorted(len(g) for g in numbers)
    if not month_like(months[0], fuzzy=False):  # "Jus 09, 2013", not "12.3 mGy"
        return day <= 2 and year == 4
    return day <= 2 and year in (2, 3, 4)  # 3: a year's digit lost ("Sep 09, 199")


_OCR_GROUP = re.compile(r"(?=.*\d)[\dOoQDIl|]+")
#: A day or month read as letters only: those OCR reads for 0, 1, 2, 5, 6, 7, 8.
_LETTER_GROUP = re.compile(r"[OoQDIl|SBZGFT]{1,2}")


def _date_shaped(text: str) -> bool:
    """Whether an OCR word is a date whatever OCR did to it: masked in ``phi`` mode even
    when the detector cannot parse it.

    Digits misread (``07/15/2618`` for 07/15/2018 in a dotted-zero font), or one letter
    of a month name and a dash (``014AN-2024`` for 01-JAN-2024 in a bold font), or the
    dash after the day read as a digit (``174JUL-2018``), or a day's 0 read as O
    (``O1JUL-2019``, ``O1/O5/2O24``, ``05-JAN-2O24``).

    Examples
    --------
    >>> [_date_shaped(t) for t in ("07/15/2618", "014AN-2024", "01-JAN-2024", "22JUL1943")]
    [True, True, True, True]
    >>> _date_shaped("174JUL-2018"), _date_shaped("O1JUL-2019"), _date_shaped("OIJUL-2019")
    (True, True, False)
    >>> _date_shaped("O1/O5/2O24"), _date_shaped("05-JAN-2O24"), _date_shaped("IO/OI/IOI")
    (True, True, False)
    >>> _date_shaped("11/38/2619.")  # 11/30/2019 in a mono oblique, a speck read as a stop
    True
    >>> [_date_shaped(t) for t in ("C5-1", "5.0mm", "12-ABC-2019", "3.2mAs", "01-4A4-2024")]
    [False, False, False, False, False]
    """
    text = text.strip(",.;:")
    if _DATE_SHAPE.fullmatch(text) or _loose_date(text):
        return True
    if (
        _LETTERED_DATE.fullmatch(text)
        and sum(ch.isdigit() for ch in text) >= 4
        and _DATE_SHAPE.fullmatch(text.translate(OCR_DIGITS))
    ):
        return True
    match = _MONTH_DATE_SHAPE.fullmatch(text)
    if match is None or not any(ch.isdigit() for ch in match.group(1)):
        return False
    if sum(ch.isdigit() for ch in match.group(3)) < len(match.group(3)) - 1:
        return False  # at most one letter in the year
    if not 1 <= int(match.group(1).translate(OCR_DIGITS)) <= 31:
        return False
    month = match.group(2).upper()
    if sum(ch.isalpha() for ch in month) < 2:
        return False
    return month_like(month)


def spread_findings(views: NDArray[np.uint8], findings: list[Finding]) -> list[Finding]:
    """Add each finding to every other frame where its ink shows and no finding covers it.

    A caption read as PHI on one frame is masked on every frame that shows
    the same glyphs at the same place, even where OCR read it differently
    (dimmer, over other anatomy, misread): a missed frame would be a leak.

    Examples
    --------
    >>> views = np.zeros((3, 20, 40), np.uint8)
    >>> views[:2, 5:12, 4:30:3] = 250; views[1, 5:12, 4:30:3] = 90   # dimmer on frame 1
    >>> f = Finding(0, (4, 5, 25, 7), "PERSON", "ocr", 0.9, "x")
    >>> [g.frame for g in spread_findings(views, [f])]
    [0, 1]
    """
    if views.shape[0] == 1 or not findings:
        return findings
    boxes: dict[int, list[Box]] = {}
    for f in findings:
        boxes.setdefault(f.frame, []).append(f.box)
    spread = list(findings)
    done: set[Box] = set()
    for f in findings:
        if f.box in done:
            continue
        done.add(f.box)
        ink = _ink(views[f.frame], f.box)
        if ink is None:
            continue
        for frame in range(views.shape[0]):
            if any(_covers(b, f.box) for b in boxes.get(frame, ())):
                continue
            if _shows(views[frame], f.box, ink):
                spread.append(replace(f, frame=frame))
                boxes.setdefault(frame, []).append(f.box)
    return spread


def _ink(view: NDArray[np.uint8], box: Box) -> tuple[NDArray[np.bool_], bool] | None:
    """The glyph pixels of ``box`` (beyond the midpoint of background and extreme), and
    whether they are brighter than the background; ``None`` when the box holds no contrast."""
    level = _ink_level(view, box)
    if level is None:
        return None
    threshold, bright = level
    x, y, w, h = box
    crop = view[y : y + h, x : x + w]
    ink = crop > threshold if bright else crop < threshold
    return (ink, bright) if np.count_nonzero(ink) >= 4 else None


def _ink_level(view: NDArray[np.uint8], box: Box, share: float = 0.5) -> tuple[int, bool] | None:
    """The grey level ``share`` of the way from ``box``'s background (median) to its extreme,
    and whether the glyphs are the bright side; ``None`` when the box holds no contrast."""
    x, y, w, h = box
    crop = view[max(0, y) : y + h, max(0, x) : x + w]
    if crop.size == 0:
        return None
    background, extreme, bright = _contrast(crop)
    if abs(extreme - background) < 12:
        return None
    return background + math.floor(share * (extreme - background)), bright


def _contrast(crop: NDArray[Any]) -> tuple[int, int, bool]:
    """``crop``'s background (median), its extreme on the glyphs' side, and whether the
    glyphs are the bright side (the extreme farther from the background)."""
    background = int(np.median(crop))
    high, low = int(crop.max()), int(crop.min())
    bright = high - background >= background - low
    return background, high if bright else low, bright


def _shows(view: NDArray[np.uint8], box: Box, ink: tuple[NDArray[np.bool_], bool]) -> bool:
    """Whether ``view`` shows the glyphs ``ink`` (from another frame) in ``box``, to a pixel."""
    mask, bright = ink
    here = _ink(view, box)
    if here is None or here[1] != bright:
        return False
    other = here[0]
    near_mask, near_other = ndimage.binary_dilation(mask), ndimage.binary_dilation(other)
    precision = int(np.count_nonzero(other & near_mask)) / max(1, int(np.count_nonzero(other)))
    recall = int(np.count_nonzero(mask & near_other)) / max(1, int(np.count_nonzero(mask)))
    return bool(precision >= 0.6 and recall >= 0.6)


def _covers(outer: Box, inner: Box) -> bool:
    """Whether ``outer`` covers at least 80% of ``inner``."""
    w = min(outer[0] + outer[2], inner[0] + inner[2]) - max(outer[0], inner[0])
    h = min(outer[1] + outer[3], inner[1] + inner[3]) - max(outer[1], inner[1])
    return w > 0 and h > 0 and w * h >= 0.8 * inner[2] * inner[3]


def trim_to_ink(view: NDArray[np.uint8], finding: Finding) -> Finding:
    """Shrink a finding's box to the rows and columns that hold glyph ink.

    OCR word boxes and proposed regions can take in an anatomy edge touching
    the caption. Ink is what lies beyond the midpoint between the box's
    background (its median) and its extreme, on the text's side. Columns count
    only where that ink touches a glyph stroke (the row top-hat of
    :func:`~dicomscrub.core.text_regions.stroke_contrast`: structures narrower
    than a stroke): the rim of a head that a caption runs into is as bright as
    faint glyphs, but wide. The box never grows.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.zeros((20, 40), np.uint8); v[5:12, 4:20:2] = 255; v[:, 30:] = 60  # text, tissue
    >>> trim_to_ink(v, Finding(0, (2, 3, 36, 12), "TEXT", "ocr", 1.0, "x")).box
    (4, 5, 15, 7)
    >>> v[8:20, 19:36] = 150  # a rim brighter than the midpoint, touching the caption
    >>> trim_to_ink(v, Finding(0, (2, 3, 36, 12), "TEXT", "ocr", 1.0, "x")).box
    (4, 5, 15, 7)
    """
    x, y, w, h = finding.box
    crop = view[y : y + h, x : x + w].astype(np.int16)
    if crop.size == 0:
        return finding
    background, extreme, bright = _contrast(crop)
    middle = (background + extreme) // 2
    ink = crop > middle if bright else crop < middle
    strokes = _near_strokes(view, finding.box, bright, abs(extreme - background))
    cols = np.flatnonzero((ink & strokes).any(axis=0))
    if cols.size == 0:
        cols = np.flatnonzero(ink.any(axis=0))
    rows = np.flatnonzero(ink[:, cols[0] : cols[-1] + 1].any(axis=1)) if cols.size else cols
    if rows.size == 0 or cols.size == 0:
        return finding
    box = (
        x + int(cols[0]),
        y + int(rows[0]),
        int(cols[-1] - cols[0] + 1),
        int(rows[-1] - rows[0] + 1),
    )
    return replace(finding, box=box)


def _near_strokes(view: NDArray[np.uint8], box: Box, bright: bool, contrast: int) -> NDArray[Any]:
    """Pixels of ``box`` within one pixel of a glyph stroke: row top-hat of at least a quarter
    of the box's contrast, computed with a stroke's width of the row on either side."""
    x, y, w, h = box
    x0, x1 = max(0, x - STROKE), min(view.shape[1], x + w + STROKE)
    hat = stroke_contrast(view[y : y + h, x0:x1], STROKE)[0 if bright else 1]
    strokes = hat[:, x - x0 : x - x0 + w] >= max(12, contrast // 4)
    return np.asarray(ndimage.binary_dilation(strokes), dtype=bool)


_TITLES = frozenset(
    {"DR", "DR.", "MR", "MR.", "MRS", "MRS.", "MS", "MS.", "PROF", "PROF.", "DOCTOR"}
)


def _with_title(group: list[Word], line: list[Word]) -> list[Word]:
    """Add the title word before a name ("Dr." in "Dr. Keith Wood") to the words to mask."""
    index = next((i for i, w in enumerate(line) if w is group[0]), 0)
    if index > 0 and line[index - 1].text.upper() in _TITLES:
        return [line[index - 1], *group]
    return group


def _caption(frame: FrameText, line: list[Word], region: Box) -> list[tuple[list[Word], Box]]:
    """``line`` and the lines that continue it on its row (gaps under 1.5 line heights).

    A rotated line (its region taller than wide) continues down or up its column instead.
    """
    along = transpose if _runs_down(region) else lambda box: box  # the line's direction as x
    members = [(line, region)]
    others = [(ln, rg) for ln, rg in zip(frame.lines, frame.regions, strict=True) if ln is not line]
    r = along(region)
    grown = True
    while grown:
        grown = False
        x0 = min(along(rg)[0] for _, rg in members)
        x1 = max(along(rg)[0] + along(rg)[2] for _, rg in members)
        for ln, rg in list(others):
            o = along(rg)
            height = max(r[3], o[3])
            overlap = min(r[1] + r[3], o[1] + o[3]) - max(r[1], o[1])
            gap = max(o[0] - x1, x0 - (o[0] + o[2]))
            if overlap >= 0.5 * min(r[3], o[3]) and gap <= 1.5 * height:
                members.append((ln, rg))
                others.remove((ln, rg))
                grown = True
    return members


def _runs_down(region: Box) -> bool:
    """Whether a line's region is a rotated line, running down the image (taller than wide)."""
    return region[3] > 2 * region[2]


def _rest_garbled(group: Sequence[Word], line: Sequence[Word]) -> bool:
    """Whether every word of ``line`` outside a PHI span's ``group`` is read too poorly to trust.

    Such words are misread pieces of the same caption more likely than labels
    (``Wms Memo espa`` for Williams Memorial Hospital, with ``espa`` at 0.52): the
    span then takes the whole line.

    Examples
    --------
    >>> w = lambda text, conf: Word(text, (0, 0, 5, 5), conf)
    >>> line = [w("Wms", 0.28), w("Memo", 0.0), w("espa", 0.52)]
    >>> _rest_garbled(line[:2], line), _rest_garbled(line[:2], line[:2] + [w("L", 0.9)])
    (True, False)
    """
    rest = [w for w in line if not any(w is g for g in group)]
    return bool(rest) and all(w.confidence < GARBLED_CONFIDENCE for w in rest)


def _plausible_words(words: Sequence[Word]) -> bool:
    """Words read confidently enough, with letters, for an NER-only span to be believed."""
    letters = sum(c.isalpha() for w in words for c in w.text)
    confidence = sum(w.confidence for w in words) / len(words)
    return letters >= 2 and confidence >= MIN_NER_OCR_CONFIDENCE


def _stretch(
    box: Box,
    group: list[Word],
    line: list[Word],
    region: Box,
    view: NDArray[np.uint8] | None = None,
    *,
    down: bool | None = None,
) -> Box:
    """Stretch a span's box toward the region edge where the span starts or ends the line.

    At most about one glyph (a line height), along the line only (``down``: a
    rotated line, running down the image; by default when its region is taller
    than wide): the region can also hold an anatomy edge that touches the
    caption. With the ``view``, an end of the line then also grows over the
    glyph ink that continues it past the region (:func:`ink_beyond`).
    """
    x0, y0, x1, y1 = box[0], box[1], box[0] + box[2], box[1] + box[3]
    rx0, ry0, rx1, ry1 = region[0], region[1], region[0] + region[2], region[1] + region[3]
    first, last = group[0] is line[0], group[-1] is line[-1]
    if _runs_down(region) if down is None else down:
        reach = max(4, box[2])
        if first or last:
            y0, y1 = max(ry0, y0 - reach), min(ry1, y1 + reach)
        y0, y1 = min(y0, box[1]), max(y1, box[1] + box[3])
        if view is not None and (first or last):  # either way: the reading may run upwards
            across = transpose((x0, y0, x1 - x0, y1 - y0))
            y0 -= ink_beyond(view.T, across, forward=False)
            y1 += ink_beyond(view.T, across, forward=True)
        return (x0, y0, x1 - x0, y1 - y0)
    reach = max(4, box[3])
    if first:
        x0 = min(x0, max(rx0, x0 - reach))
    if last:
        x1 = max(x1, min(rx1, x1 + reach))
    if view is not None:
        grown = (x0, y0, x1 - x0, y1 - y0)
        if first:
            x0 -= ink_beyond(view, grown, forward=False)
        if last:
            x1 += ink_beyond(view, grown, forward=True)
    return (x0, y0, x1 - x0, y1 - y0)


def ink_beyond(view: NDArray[np.uint8], box: Box, *, forward: bool) -> int:
    """How many columns of glyph ink continue ``box``'s line past its right (or left) end.

    The region proposal can stop a glyph short of a line's end: the row
    top-hat drops the joined bars of "TT", and the last stem stands too far
    from the rest. Ink is what lies three quarters of the way from the box's
    background to its glyphs' extreme (a dimmer anatomy edge that the caption
    overlaps is not ink). A column counts when it has ink within the line's rows
    (a quarter of the line height of slack for descenders); ink further above
    or below (an anatomy edge running past the caption) stops the growth, as
    do more than a third of a line height of empty columns, and it never goes
    further than 1.5 line heights.

    Examples
    --------
    >>> v = np.zeros((30, 60), np.uint8)
    >>> v[10:20, 5:25:3] = 255; v[10:12, 29:40] = 255; v[10:20, 34] = 255  # a line, a cut-off "T"
    >>> ink_beyond(v, (5, 10, 22, 10), forward=True)
    13
    >>> v[:, 29:40] = 180  # an anatomy edge instead: taller than the line
    >>> ink_beyond(v, (5, 10, 22, 10), forward=True)
    0
    """
    x, y, w, h = box
    level = _ink_level(view, box, 0.75)
    if level is None or h < 2:
        return 0
    threshold, bright = level
    rows, cols = view.shape
    slack = max(1, h // 4)
    top, bottom = max(0, y - 2 * slack), min(rows, y + h + 2 * slack)
    limit = int(1.5 * h)
    lo, hi = (x + w, min(cols, x + w + limit)) if forward else (max(0, x - limit), x)
    if hi <= lo:
        return 0
    strip = view[top:bottom, lo:hi].astype(np.int16)
    ink: NDArray[np.bool_] = np.asarray(strip > threshold if bright else strip < threshold)
    inner_top, inner_bottom = max(0, y - slack - top), min(bottom, y + h + slack) - top
    inside = set(np.flatnonzero(ink[inner_top:inner_bottom].any(axis=0)).tolist())
    outside = set(np.flatnonzero(ink[:inner_top].any(axis=0)).tolist())
    outside.update(np.flatnonzero(ink[inner_bottom:].any(axis=0)).tolist())
    order = range(hi - lo) if forward else range(hi - lo - 1, -1, -1)
    reached, empty, max_gap = 0, 0, max(2, h // 3)
    for step, column in enumerate(order, start=1):
        if column in outside:
            break
        if column in inside:
            reached, empty = step, 0
        else:
            empty += 1
            if empty > max_gap:
                break
    return reached


def _union(boxes: Sequence[Box]) -> Box:
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def matching_regions(ds: Dataset, regions: Sequence[FixedRegion]) -> list[Box]:
    """Boxes of every fixed region whose matchers all equal the dataset's values.

    Examples
    --------
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset(); ds.Manufacturer = "ACME"; ds.Rows = 480; ds.Columns = 640
    >>> r = FixedRegion(manufacturer="acme ", rows=480, boxes=((0, 0, 640, 40),))
    >>> matching_regions(ds, [r])
    [(0, 0, 640, 40)]
    """
    boxes: list[Box] = []
    for region in regions:
        checks = [
            (region.manufacturer, ds.get("Manufacturer")),
            (region.model, ds.get("ManufacturerModelName")),
        ]
        if any(
            want is not None and str(have or "").strip().lower() != want.strip().lower()
            for want, have in checks
        ):
            continue
        if region.rows is not None and int(ds.get("Rows", -1)) != region.rows:
            continue
        if region.columns is not None and int(ds.get("Columns", -1)) != region.columns:
            continue
        boxes.extend(tuple(b) for b in region.boxes)  # type: ignore[misc]
    return boxes


# --- mask ---------------------------------------------------------------------------------------


def pad_box(box: Box, padding: int, shape: tuple[int, ...]) -> Box | None:
    """Grow ``box`` by ``padding`` on every side and clip it to an image of ``shape``."""
    x, y, w, h = box
    x0, y0 = max(0, x - padding), max(0, y - padding)
    x1, y1 = min(shape[1], x + w + padding), min(shape[0], y + h + padding)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def background_fill(frame: NDArray[Any], box: Box) -> NDArray[Any]:
    """The most common stored value (per pixel, all samples) in a 2-pixel ring around ``box``.

    Ties go to the lowest value (colour: the lowest in channel order).

    Examples
    --------
    >>> f = np.full((10, 10), 7, np.uint16); f[0, :] = 3; f[4:6, 4:6] = 900
    >>> int(background_fill(f, (4, 4, 2, 2)))
    7
    """
    x, y, w, h = box
    rows, cols = frame.shape[:2]
    y0, y1, x0, x1 = max(0, y - 2), min(rows, y + h + 2), max(0, x - 2), min(cols, x + w + 2)
    strips = [
        frame[y0:y, x0:x1],  # above
        frame[y + h : y1, x0:x1],  # below
        frame[y : y + h, x0:x],  # left
        frame[y : y + h, x + w : x1],  # right
    ]
    samples = frame.shape[2:]
    values = np.concatenate([s.reshape(-1, *samples) for s in strips])
    if values.shape[0] == 0:  # the box covers the whole image
        values = frame.reshape(-1, *samples)
    if values.ndim == 2:  # colour: one integer per pixel (samples of up to 16 bits), same order
        packed = np.zeros(values.shape[0], np.int64)
        for channel in range(values.shape[1]):
            packed = (packed << 17) | (values[:, channel].astype(np.int64) & 0x1FFFF)
        uniq, first, counts = np.unique(packed, return_index=True, return_counts=True)
        return np.asarray(values[first[np.argmax(counts)]])
    uniq, counts = np.unique(values, return_counts=True)
    return np.asarray(uniq[np.argmax(counts)])


def mask_box(frame: NDArray[Any], box: Box) -> bool:
    """Fill ``box`` of ``frame`` in place with its background; return whether a value changed."""
    x, y, w, h = box
    fill = background_fill(frame, box)
    target = frame[y : y + h, x : x + w]
    changed = bool(np.any(target != fill))
    target[...] = fill
    return changed


def hidden_overlay_bits(ds: Dataset) -> bool:
    """Whether native pixel data holds set bits above HighBit (retired in-pixel overlays).

    Signed data whose upper bits just repeat the sign bit is not flagged.
    """
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if ts and ts.is_compressed:
        return False
    bits, stored = int(ds.get("BitsAllocated", 8)), int(ds.get("BitsStored", 8))
    if bits not in (16, 32) or stored >= bits:
        return False
    order = ">" if ts == UID("1.2.840.10008.1.2.2") else "<"
    raw = np.frombuffer(ds.PixelData, dtype=f"{order}u{bits // 8}")
    high = raw >> stored
    if int(ds.get("PixelRepresentation", 0)) == 0:
        return bool(high.any())
    extension = ((raw >> (stored - 1)) & 1) * ((1 << (bits - stored)) - 1)
    return bool(np.any((high != 0) & (high != extension)))


# --- overlays -----------------------------------------------------------------------------------


def overlay_groups(ds: Dataset) -> list[int]:
    """Groups 0x6000-0x601E that hold an OverlayData (60xx,3000) element."""
    return [g for g in range(0x6000, 0x6020, 2) if (g, 0x3000) in ds]


def clean_overlays(
    ds: Dataset,
    detector: TextDetector | None,
    backend: OcrBackend,
    *,
    mode: str,
    padding: int,
    rotated: bool,
) -> list[Finding]:
    """Read text in each overlay plane and clear the bits of the boxes to mask.

    Returns findings whose ``frame`` is the overlay group (for the entity tag).
    """
    from pydicom.pixels.utils import pack_bits

    findings: list[Finding] = []
    for group in overlay_groups(ds):
        try:
            plane = np.asarray(ds.overlay_array(group), dtype=np.uint8)
        except Exception as exc:
            raise DeidError(
                ErrorCode.DECODE_FAILED,
                f"cannot unpack overlay group {group:04X} ({type(exc).__name__})",
            ) from None
        planes = plane[np.newaxis] if plane.ndim == 2 else plane
        views = np.asarray(planes * 255, dtype=np.uint8)
        frames = read_text(views, backend, rotated=rotated)
        found = classify(frames, detector, mode=mode, views=views)
        changed = False
        for f in found:
            box = pad_box(f.box, padding, planes.shape[1:])
            if box is None:
                continue
            x, y, w, h = box
            region = planes[f.frame, y : y + h, x : x + w]
            changed |= bool(region.any())
            region[...] = 0
            findings.append(Finding(group, box, f.entity_type, "overlay", f.confidence, f.text))
        if changed:
            ds[group, 0x3000].value = pack_bits(planes.ravel())
    return findings


# --- the entry point ----------------------------------------------------------------------------


def redact_pixels(
    ds: Dataset,
    *,
    detector: TextDetector | None,
    policy: Policy,
    hmac: Callable[[str], str],
    keep_raw_text: bool = False,
    backend: OcrBackend | None = None,
) -> PixelOutcome:
    """Mask burned-in PHI (or all text) in every frame of ``ds``, in place.

    Parameters
    ----------
    ds
        A dataset with Pixel Data. Modified in place: PixelData (only when a
        value changed), the transfer syntax and dependent attributes,
        BurnedInAnnotation, overlay planes (under ``clean_graphics``).
    detector
        The shared text detector built with the record's identifiers
        (``TextDetector.with_identifiers``); ``None`` only in ``all_text`` mode.
    policy
        ``policy.pixels`` drives the step; ``policy.options.clean_graphics``
        enables overlay cleaning.
    hmac
        Keyed HMAC for the text of each masked box (goes into the entity).
    keep_raw_text
        Put the OCR text into ``Entity.raw_text`` (in memory only).
    backend
        The OCR backend; default ``get_backend(policy.pixels.ocr_backend)``.

    Raises
    ------
    DeidError
        ``too_many_pixels``, ``unsupported_transfer_syntax``,
        ``decode_failed``, ``ocr_unavailable``, ``ocr_failed``,
        ``encode_failed``: the file must not be written.
    """
    settings = policy.pixels
    if settings.mode == "off" or "PixelData" not in ds:
        return PixelOutcome(frames=frame_count(ds) if "PixelData" in ds else 0)
    if settings.mode == "phi" and detector is None:
        raise ValueError("phi mode needs a text detector")
    check_declared_size(ds, settings.max_pixels)
    backend = backend or get_backend(settings.ocr_backend)
    decoded = decode(ds)
    frames = decoded.frames
    count = frames.shape[0]

    try:
        views = ocr_views(ds, decoded)
    except Exception as exc:  # a palette, LUT or window the decoded values do not fit
        raise DeidError(
            ErrorCode.DECODE_FAILED,
            f"cannot turn the pixels into grey levels for OCR ({type(exc).__name__})",
        ) from None
    texts = read_text(views, backend, rotated=settings.read_rotated)
    found = [
        trim_to_ink(views[f.frame], f)
        for f in classify(texts, detector, mode=settings.mode, views=views)
    ]
    findings = spread_findings(views, found)
    for box in matching_regions(ds, settings.regions):
        for index in range(count):
            findings.append(Finding(index, box, "TEXT", "region", 1.0, ""))

    entities: list[Entity] = []
    frame_changed = [False] * count
    for f in findings:
        padded = pad_box(f.box, settings.padding if f.detector == "ocr" else 0, frames.shape[1:3])
        if padded is None:
            continue
        frame_changed[f.frame] |= mask_box(frames[f.frame], padded)
        entities.append(_entity(f, padded, PIXEL_TAG, "PixelData", hmac, keep_raw_text))

    changed = any(frame_changed)
    if hidden_overlay_bits(ds):
        changed = True  # the decoded values are already clean: re-encoding drops the bits
        frame_changed = [True] * count
        entities.append(
            Entity(
                location="pixel",
                tag=PIXEL_TAG,
                keyword="PixelData",
                entity_type="OVERLAY",
                detector="overlay",
                action="removed",
                value_hmac=hmac("overlay bits above HighBit"),
            )
        )
    overlay_changed = False
    if policy.options.clean_graphics:
        for f in clean_overlays(
            ds,
            detector,
            backend,
            mode=settings.mode,
            padding=settings.padding,
            rotated=settings.read_rotated,
        ):
            overlay_changed = True
            tag = f"({f.frame:04X},3000)"
            entities.append(_entity(f, f.box, tag, "OverlayData", hmac, keep_raw_text, frame=0))

    if changed:
        encode_pixels(
            ds,
            frames,
            photometric=decoded.photometric,
            source=decoded.source,
            changed=frame_changed,
        )
    if changed or "BurnedInAnnotation" in ds:
        ds.BurnedInAnnotation = "NO"
    return PixelOutcome(entities=entities, changed=changed or overlay_changed, frames=count)


def _entity(
    f: Finding,
    box: Box,
    tag: str,
    keyword: str,
    hmac: Callable[[str], str],
    keep_raw_text: bool,
    *,
    frame: int | None = None,
) -> Entity:
    return Entity(
        location="pixel",
        tag=tag,
        keyword=keyword,
        entity_type=f.entity_type,
        detector=f.detector,
        action="masked",
        value_hmac=hmac(f.text),
        confidence=f.confidence,
        frame=f.frame if frame is None else frame,
        box=box,
        raw_text=f.text if keep_raw_text else None,
    )
