"""OCR backends: read words (text, box, confidence) from small greyscale crops.

Two backends share one interface, :class:`OcrBackend`:

- :class:`PytesseractBackend` runs the ``tesseract`` program (always available
  where ``tesseract-ocr`` is installed). Each call pays a process start and a
  model load (~75 ms), so callers stack every crop of an image into one call
  (:func:`read_regions`). The image goes over as BMP, which avoids the PNG
  compression pytesseract would otherwise spend time on.
- :class:`TesserocrBackend` calls libtesseract in-process through ``tesserocr``
  (the ``fast-ocr`` extra), keeping the model loaded: 2-4x faster per image.

:func:`get_backend` picks one (``auto`` prefers tesserocr) and raises
``DeidError(ocr_unavailable)`` when OCR cannot run: a file is never passed as
clean because its text could not be read.

Examples
--------
>>> import numpy as np
>>> from PIL import Image, ImageDraw, ImageFont
>>> img = Image.new("L", (220, 40), 255)
>>> ImageDraw.Draw(img).text((8, 4), "HELLO 42", fill=0, font=ImageFont.load_default(24))
>>> words = get_backend("pytesseract").read(np.asarray(img))
>>> [w.text for w in words]
['HELLO', '42']
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from .errors import DeidError, ErrorCode
from .text_regions import Region

BackendName = Literal["auto", "pytesseract", "tesserocr"]

#: tessdata of the Debian package; tesserocr's wheel bundles libtesseract but no models.
SYSTEM_TESSDATA = "/usr/share/tesseract-ocr/5/tessdata"
#: Crops are narrowed to this share of their width before OCR: tesseract's LSTM cost follows
#: the line's length in line heights, and it reads glyphs narrowed this much as well.
SQUEEZE = 1.0
#: Line height (pixels) crops are scaled to before OCR: tesseract reads best around here.
TARGET_HEIGHT = 28
#: Tesseract settings: one uniform block; no inverted retry (crops are normalised).
PSM = 6
_CONFIG = {"tessedit_do_invert": "0"}


@dataclass(frozen=True)
class Word:
    """One OCR word.

    Attributes
    ----------
    text
        The word as read.
    box
        ``(x, y, width, height)`` in the coordinates of the image that was read.
    confidence
        0..1 as reported by tesseract.
    line
        Index of the text line inside the image (words of one line share it).
    """

    text: str
    box: tuple[int, int, int, int]
    confidence: float
    line: int = 0


_CARET = re.compile(r"(?<=[A-Za-z])\*(?=[A-Za-z])")


def clean_word(text: str) -> str:
    """Undo tesseract's systematic misreads that matter for matching: ``DOE*JANE`` is ``DOE^JANE``.

    Examples
    --------
    >>> clean_word("DOE*JANE"), clean_word("*Renal")
    ('DOE^JANE', '*Renal')
    """
    return _CARET.sub("^", text)


class OcrBackend(Protocol):
    """Reads dark text on a light background from a 2-D ``uint8`` image."""

    name: str

    def read(self, image: NDArray[np.uint8]) -> list[Word]:
        """Return the words of ``image`` in reading order."""
        ...


def _ensure_thread_limit() -> None:
    # Debian's tesseract uses OpenMP: one thread is ~3x faster on small shared machines.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")


class PytesseractBackend:
    """Tesseract through the ``tesseract`` program (pytesseract).

    Raises ``DeidError(ocr_unavailable)`` on construction when the program is
    missing, and ``DeidError(ocr_failed)`` when it crashes on an image.
    """

    name = "pytesseract"

    def __init__(self, tesseract_cmd: str | None = None) -> None:
        import pytesseract

        _ensure_thread_limit()
        self._pt = pytesseract
        if tesseract_cmd is not None:
            pytesseract.pytesseract.tesseract_cmd = tesseract_cmd
        try:
            self.version = str(pytesseract.get_tesseract_version())
        except (pytesseract.TesseractNotFoundError, OSError) as exc:
            raise DeidError(
                ErrorCode.OCR_UNAVAILABLE,
                f"tesseract is not installed or not runnable ({type(exc).__name__})",
            ) from None
        self._config = f"--psm {PSM} " + " ".join(f"-c {k}={v}" for k, v in _CONFIG.items())

    def read(self, image: NDArray[np.uint8]) -> list[Word]:
        """Return the words of ``image`` (dark text on light)."""
        pil = Image.fromarray(np.ascontiguousarray(image))
        pil.format = "BMP"  # pytesseract saves in this format: BMP skips PNG compression
        try:
            data: dict[str, list[Any]] = self._pt.image_to_data(
                pil, config=self._config, output_type=self._pt.Output.DICT
            )
        except self._pt.TesseractNotFoundError:
            raise DeidError(ErrorCode.OCR_UNAVAILABLE, "tesseract disappeared") from None
        except (self._pt.TesseractError, OSError, RuntimeError) as exc:
            raise DeidError(
                ErrorCode.OCR_FAILED, f"tesseract failed ({type(exc).__name__})"
            ) from None
        words: list[Word] = []
        lines: dict[tuple[int, int, int], int] = {}
        for i, text in enumerate(data["text"]):
            text = str(text).strip()
            conf = float(data["conf"][i])
            if not text or conf < 0:
                continue
            key = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
            line = lines.setdefault(key, len(lines))
            box = (
                int(data["left"][i]),
                int(data["top"][i]),
                int(data["width"][i]),
                int(data["height"][i]),
            )
            words.append(Word(clean_word(text), box, conf / 100.0, line))
        return words


class TesserocrBackend:
    """Tesseract in-process through ``tesserocr`` (one engine per thread, kept loaded)."""

    name = "tesserocr"

    def __init__(self, tessdata: str | None = None) -> None:
        _ensure_thread_limit()
        try:
            import tesserocr
        except ImportError:
            raise DeidError(
                ErrorCode.OCR_UNAVAILABLE, "tesserocr is not installed (extra 'fast-ocr')"
            ) from None
        self._tr = tesserocr
        self._path = tessdata or os.environ.get("TESSDATA_PREFIX") or SYSTEM_TESSDATA
        if not os.path.isfile(os.path.join(self._path, "eng.traineddata")):
            raise DeidError(
                ErrorCode.OCR_UNAVAILABLE, "no eng.traineddata in the tessdata directory"
            )
        self._local = threading.local()
        self._api()  # fail now, not on the first image

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:
            tr = self._tr
            try:
                api = tr.PyTessBaseAPI(path=self._path, lang="eng", psm=tr.PSM.SINGLE_BLOCK)
            except RuntimeError:
                raise DeidError(
                    ErrorCode.OCR_UNAVAILABLE, "libtesseract could not load its model"
                ) from None
            for key, value in _CONFIG.items():
                api.SetVariable(key, value)
            self._local.api = api
        return api

    def read(self, image: NDArray[np.uint8]) -> list[Word]:
        """Return the words of ``image`` (dark text on light)."""
        tr = self._tr
        api = self._api()
        try:
            api.SetImage(Image.fromarray(np.ascontiguousarray(image)))
            api.Recognize()
            iterator = api.GetIterator()
        except RuntimeError as exc:
            raise DeidError(
                ErrorCode.OCR_FAILED, f"tesseract failed ({type(exc).__name__})"
            ) from None
        words: list[Word] = []
        line = -1
        level = tr.RIL.WORD
        if iterator is None:  # nothing recognised
            api.Clear()
            return []
        for item in tr.iterate_level(iterator, level):
            if item is None:
                continue
            if item.IsAtBeginningOf(tr.RIL.TEXTLINE):
                line += 1
            try:
                text = item.GetUTF8Text(level)
                box = item.BoundingBox(level)
            except RuntimeError:  # an empty word ("No text returned")
                continue
            if not text or not text.strip() or box is None:
                continue
            x0, y0, x1, y1 = box
            words.append(
                Word(
                    clean_word(text.strip()),
                    (x0, y0, x1 - x0, y1 - y0),
                    item.Confidence(level) / 100.0,
                    max(line, 0),
                )
            )
        api.Clear()
        return words


@cache
def get_backend(name: BackendName = "auto") -> OcrBackend:
    """Return the OCR backend ``name`` (one instance per process).

    ``auto`` returns tesserocr when it is importable and finds its model, else
    pytesseract. Raises ``DeidError(ocr_unavailable)`` when neither can run.

    Examples
    --------
    >>> get_backend("pytesseract").name
    'pytesseract'
    """
    if name == "tesserocr":
        return TesserocrBackend()
    if name == "pytesseract":
        return PytesseractBackend()
    try:
        return TesserocrBackend()
    except DeidError:
        pass
    if shutil.which("tesseract") is None:
        raise DeidError(ErrorCode.OCR_UNAVAILABLE, "neither tesserocr nor tesseract is installed")
    return PytesseractBackend()


# --- reading proposed regions ------------------------------------------------------------------

#: Line numbers of the counter-clockwise reading of a rotated region start here.
ROTATED_LINE_OFFSET = 1000
_MARGIN = 12  # white border around each crop in the stacked image
_GAP = 20  # white rows between stacked crops (less, and tesseract can merge neighbouring slots)
#: View pixels added around a region before OCR.
CROP_PAD = 3


@dataclass
class _Slot:
    item: int
    top: int
    height: int
    scale: float
    xscale: float  # across the line: :data:`SQUEEZE` times ``scale``
    origin: tuple[int, int]  # crop origin in the view
    shape: tuple[int, int]  # crop shape (h, w) before rotation/scaling
    turns: int  # np.rot90 turns applied to the crop


def _normalise(crop: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Dark text on a white background, whatever the crop's polarity and banner colour.

    Tesseract's layout analysis skips grey rectangles on a white page as
    pictures, so the crop's background (its median) is stretched to white.
    """
    background = float(np.median(crop))
    if float(crop.max()) - background > background - float(crop.min()):
        crop = np.asarray(255 - crop, dtype=np.uint8)
        background = 255.0 - background
    ink = float(crop.min())
    if background - ink < 1.0:
        return np.full_like(crop, 255)
    scaled = (crop.astype(np.float32) - ink) * (255.0 / (background - ink))
    return np.asarray(np.clip(scaled, 0, 255), dtype=np.uint8)


def _turns(region: Region) -> tuple[int, ...]:
    """``np.rot90`` turns to read a region in: a rotated region both ways, and unturned as
    well when it is not clearly taller than wide (which way it runs is then not certain)."""
    if not region.rotated:
        return (0,)
    _, _, w, h = region.box
    return (1, 3) if h >= 2.5 * w else (0, 1, 3)


def _line_height(crop: NDArray[np.uint8]) -> int:
    """Height of the text lines in a normalised crop (dark ink on white).

    Rows holding ink form runs, one per line where lines are apart; the
    tallest run is the line height (the crop height when lines touch).

    Examples
    --------
    >>> c = np.full((30, 20), 255, np.uint8); c[2:9, 3:15] = 0; c[12:19, 3:15] = 0
    >>> _line_height(c)
    7
    """
    rows = np.flatnonzero((crop < 128).any(axis=1))
    if rows.size == 0:
        return int(crop.shape[0])
    breaks = np.flatnonzero(np.diff(rows) > 1)
    starts = np.concatenate(([rows[0]], rows[breaks + 1]))
    ends = np.concatenate((rows[breaks], [rows[-1]]))
    return int((ends - starts).max()) + 1


def _scale_for(height: int) -> float:
    if height < TARGET_HEIGHT:
        return min(4.0, TARGET_HEIGHT / max(height, 1))
    if height > 3 * TARGET_HEIGHT:
        return 2 * TARGET_HEIGHT / height
    return 1.0


def read_regions(
    backend: OcrBackend,
    items: Sequence[tuple[NDArray[np.uint8], Region]],
) -> list[list[Word]]:
    """OCR every ``(view, region)`` pair with one backend call; return words in view coordinates.

    The crops are normalised (dark on light), scaled to a common line height and
    stacked into one image. A rotated region is read turned both ways (90
    degrees clockwise and counter-clockwise) and both readings are returned,
    as separate lines (the second one's line numbers offset by
    :data:`ROTATED_LINE_OFFSET`): the wrong way up usually reads as noise, but
    tesseract is sometimes confident about noise, so the classifier sees both.
    A region that reads as nothing while others on the page read is read once
    more on a page of its own (tesseract rarely drops a whole line of a stacked
    page that it reads alone without fault).

    Readings are cached per backend by the crop's content (a keyed digest of
    its pixels, kept in memory only, at most :data:`CACHE_SIZE` crops): the
    captions of a series (name, ID, hospital) repeat pixel for pixel from
    image to image and from frame to frame, and are read once.

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image, ImageDraw, ImageFont
    >>> img = Image.new("L", (200, 60), 0)
    >>> ImageDraw.Draw(img).text((10, 20), "Liver 5", fill=255, font=ImageFont.load_default(16))
    >>> view = np.asarray(img)
    >>> [[w.text for w in ws] for ws in read_regions(get_backend("pytesseract"),
    ...                                               [(view, Region((6, 16, 90, 26)))])]
    [['Liver', '5']]
    """
    result: list[list[Word]] = [[] for _ in items]
    todo: dict[bytes, list[tuple[int, tuple[int, int]]]] = {}
    with _CACHE_LOCK:
        cache = _CACHES.get(backend)
        if cache is None:
            cache = _CACHES[backend] = OrderedDict()
    for index, (view, region) in enumerate(items):
        key, origin = _crop_key(view, region)
        with _CACHE_LOCK:
            cached = cache.get(key)
            if cached is not None:
                cache.move_to_end(key)
        if cached is not None:
            result[index] = _shifted(cached, origin)
        else:
            todo.setdefault(key, []).append((index, origin))
    if not todo:
        return result
    keys = list(todo)
    first = [todo[k][0][0] for k in keys]
    read = _read_stacked(backend, [items[i] for i in first])
    retry = [
        j
        for j, words in enumerate(read)
        if not words or (not items[first[j]][1].rotated and poorly_read(words))
    ]
    if retry and len(retry) < len(read):
        # Tesseract binarises the stacked page as a whole and, rarely, drops a whole line of
        # it or reads one as noise ("ratiquez aging Cntr" for "Rodriguez Imaging Center")
        # that it reads well with other neighbours: those regions get one more call, on a
        # page of their own (the same page again would read the same). A region read as
        # noise takes the new reading only when it is clean (:data:`CLEAN_READING`):
        # speckle and traces read as noise either way, and their second noise is no better.
        again = _read_stacked(backend, [items[first[j]] for j in retry])
        for j, words in zip(retry, again, strict=True):
            if not read[j] or (words and _mean_confidence(words) >= CLEAN_READING):
                read[j] = words
    with _CACHE_LOCK:
        for key, words in zip(keys, read, strict=True):
            origin = todo[key][0][1]
            cache[key] = _shifted(words, (-origin[0], -origin[1]))
            while len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
    for key, words in zip(keys, read, strict=True):
        base = todo[key][0][1]
        for index, origin in todo[key]:
            result[index] = _shifted(words, (origin[0] - base[0], origin[1] - base[1]))
    return result


#: Mean confidence of a second reading that replaces a region's noisy first one.
CLEAN_READING = 0.7


def poorly_read(words: Sequence[Word]) -> bool:
    """Whether a region's reading looks like noise: mean confidence under 0.5, and a word
    of four letters or more read below 0.3 (``ratiquez`` at 0.0 in ``ratiquez aging Cntr``).

    >>> poorly_read([Word("ratiquez", (0, 0, 9, 9), 0.0, 0), Word("aging", (9, 0, 9, 9), 0.63, 0)])
    True
    >>> poorly_read([Word("WW", (0, 0, 9, 9), 0.2, 0), Word("400", (9, 0, 9, 9), 0.9, 0)])
    False
    """
    return (
        bool(words)
        and _mean_confidence(words) < 0.5
        and any(w.confidence < 0.3 and sum(c.isalpha() for c in w.text) >= 4 for w in words)
    )


def _mean_confidence(words: Sequence[Word]) -> float:
    return sum(w.confidence for w in words) / len(words)


#: Crops whose readings are kept per backend (about 1 KB each).
CACHE_SIZE = 4096
_CACHES: weakref.WeakKeyDictionary[OcrBackend, OrderedDict[bytes, list[Word]]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()
_CACHE_KEY = os.urandom(16)  # digests are keyed per process: nothing to match them against


def clear_cache() -> None:
    """Forget every cached OCR reading (all backends) in this process.

    For measurements that must not be helped by an earlier file's readings
    (benchmarks, cold-start tests); a running engine never needs it.

    Examples
    --------
    >>> clear_cache()
    """
    with _CACHE_LOCK:
        for cache in _CACHES.values():
            cache.clear()


def _crop_key(view: NDArray[np.uint8], region: Region) -> tuple[bytes, tuple[int, int]]:
    """Digest of what OCR would see for ``region`` (crop pixels, shape, reading turns), and the
    crop's origin in the view."""
    x, y, w, h = region.box
    y0, x0 = max(0, y - CROP_PAD), max(0, x - CROP_PAD)
    y1, x1 = min(view.shape[0], y + h + CROP_PAD), min(view.shape[1], x + w + CROP_PAD)
    crop = np.ascontiguousarray(view[y0:y1, x0:x1])
    digest = hashlib.blake2b(crop.tobytes(), key=_CACHE_KEY, digest_size=20)
    digest.update(f"{crop.shape}|{_turns(region)}|{TARGET_HEIGHT}|{SQUEEZE}".encode())
    return digest.digest(), (x0, y0)


def _shifted(words: list[Word], offset: tuple[int, int]) -> list[Word]:
    dx, dy = offset
    if not dx and not dy:
        return list(words)
    return [
        Word(w.text, (w.box[0] + dx, w.box[1] + dy, w.box[2], w.box[3]), w.confidence, w.line)
        for w in words
    ]


def _read_stacked(
    backend: OcrBackend,
    items: Sequence[tuple[NDArray[np.uint8], Region]],
) -> list[list[Word]]:
    """Stack the crops of ``items`` into one image, read it, map words back (no cache)."""
    slots: list[_Slot] = []
    pieces: list[NDArray[np.uint8]] = []
    top = _GAP
    for index, (view, region) in enumerate(items):
        x, y, w, h = region.box
        y0, x0 = max(0, y - CROP_PAD), max(0, x - CROP_PAD)
        y1, x1 = min(view.shape[0], y + h + CROP_PAD), min(view.shape[1], x + w + CROP_PAD)
        crop = _normalise(view[y0:y1, x0:x1])
        for turns in _turns(region):
            turned = np.rot90(crop, turns) if turns else crop
            scale = _scale_for(turned.shape[0])
            if turns == 0 and turned.shape[0] <= 3 * TARGET_HEIGHT:
                # Small lines stacked in one region: scale for one line, not for the block
                # (at most to four line heights tall: speckle has short "lines" too).
                line = _line_height(turned)
                if line < 0.6 * turned.shape[0]:
                    most = 4 * TARGET_HEIGHT / turned.shape[0]
                    scale = max(scale, min(6.0, most, TARGET_HEIGHT / max(1, line)))
            xscale = scale * SQUEEZE
            if scale != 1.0 or xscale != 1.0:
                size = (
                    max(1, round(turned.shape[1] * xscale)),
                    max(1, round(turned.shape[0] * scale)),
                )
                turned = np.asarray(
                    Image.fromarray(np.ascontiguousarray(turned)).resize(
                        size, Image.Resampling.BICUBIC
                    )
                )
            slots.append(
                _Slot(index, top, turned.shape[0], scale, xscale, (x0, y0), crop.shape, turns)
            )
            pieces.append(turned)
            top += turned.shape[0] + _GAP
    result: list[list[Word]] = [[] for _ in items]
    region_rotated = [region.rotated for _, region in items]
    if not pieces:
        return result
    width = max(p.shape[1] for p in pieces) + 2 * _MARGIN
    canvas = np.full((top, width), 255, np.uint8)
    for slot, piece in zip(slots, pieces, strict=True):
        canvas[slot.top : slot.top + piece.shape[0], _MARGIN : _MARGIN + piece.shape[1]] = piece
    words = backend.read(canvas)
    per_slot: list[list[Word]] = [[] for _ in slots]
    tops = np.array([s.top for s in slots])
    for word in words:
        centre = word.box[1] + word.box[3] / 2
        i = int(np.searchsorted(tops, centre, side="right")) - 1
        if i < 0 or centre > slots[i].top + slots[i].height + _GAP / 2:
            continue
        per_slot[i].append(_to_view(word, slots[i]))
    for slot, found in zip(slots, per_slot, strict=True):
        if slot.turns == 3:  # the other reading of a rotated region: its own lines
            found = [Word(w.text, w.box, w.confidence, w.line + ROTATED_LINE_OFFSET) for w in found]
        elif slot.turns == 0 and region_rotated[slot.item]:  # a squat "rotated" region, unturned
            found = [
                Word(w.text, w.box, w.confidence, w.line + 2 * ROTATED_LINE_OFFSET) for w in found
            ]
        result[slot.item].extend(found)
    return result


def _to_view(word: Word, slot: _Slot) -> Word:
    """Map a word box from the stacked image back to view coordinates."""
    x, y, w, h = word.box
    # Back to the (possibly rotated) crop, unscaled.
    cx0 = (x - _MARGIN) / slot.xscale
    cy0 = (y - slot.top) / slot.scale
    cx1 = (x + w - _MARGIN) / slot.xscale
    cy1 = (y + h - slot.top) / slot.scale
    ch, cw = slot.shape
    # A word cannot reach beyond the crop it was read from (tesseract pads some boxes).
    th, tw = (cw, ch) if slot.turns in (1, 3) else (ch, cw)
    cx0, cx1 = max(0.0, cx0), min(float(tw), cx1)
    cy0, cy1 = max(0.0, cy0), min(float(th), cy1)
    if slot.turns == 1:  # rot90 counter-clockwise: crop (r, c) -> turned (cw-1-c, r)
        cx0, cy0, cx1, cy1 = cw - cy1, cx0, cw - cy0, cx1
    elif slot.turns == 3:  # clockwise: crop (r, c) -> turned (c, ch-1-r)
        cx0, cy0, cx1, cy1 = cy0, ch - cx1, cy1, ch - cx0
    ox, oy = slot.origin
    x0, y0 = int(np.floor(ox + cx0)), int(np.floor(oy + cy0))
    x1, y1 = int(np.ceil(ox + cx1)), int(np.ceil(oy + cy1))
    return Word(word.text, (x0, y0, max(1, x1 - x0), max(1, y1 - y0)), word.confidence, word.line)
