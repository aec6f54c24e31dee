"""OCR backends: pytesseract and tesserocr pass the same tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from dicomscrub.core.ocr import (
    ROTATED_LINE_OFFSET,
    OcrBackend,
    Word,
    clear_cache,
    get_backend,
    read_regions,
)
from dicomscrub.core.text_regions import Region, propose_text_regions


@pytest.fixture(scope="module", params=["pytesseract", "tesserocr"])
def backend(request: pytest.FixtureRequest) -> OcrBackend:
    return get_backend(request.param)


def _view(
    lines: list[tuple[tuple[int, int], str, int]], size: tuple[int, int]
) -> NDArray[np.uint8]:
    img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(img)
    for xy, text, font_size in lines:
        draw.text(xy, text, fill=255, font=ImageFont.load_default(font_size))
    return np.asarray(img).copy()


def test_read_whole_image(backend: OcrBackend) -> None:
    img = 255 - _view([((8, 8), "PATIENT 12345", 24)], (300, 50))
    words = backend.read(img)
    assert [w.text for w in words] == ["PATIENT", "12345"]
    assert all(0.5 < w.confidence <= 1.0 for w in words)
    assert words[0].box[0] < words[1].box[0]


def test_stacked_regions_map_back_to_view(backend: OcrBackend) -> None:
    view = _view(
        [
            ((4, 4), "DOE JANE", 12),
            ((200, 100), "MRN 0047431395", 20),
            ((10, 170), "Sag Liver", 15),
        ],
        (420, 200),
    )
    regions = propose_text_regions(view)
    words = [w for ws in read_regions(backend, [(view, r) for r in regions]) for w in ws]
    found = {w.text: w.box for w in words}
    assert {"DOE", "JANE", "MRN", "0047431395", "Sag", "Liver"} <= set(found)
    x, y, w, h = found["0047431395"]
    ink = view[y : y + h, x : x + w] > 60
    assert ink.sum() > 0.8 * (view[95:130, 240:420] > 60).sum()  # the box holds the digits
    assert 230 < x < 300
    assert 95 <= y <= 110


@pytest.mark.parametrize("turns", [1, 3])
def test_rotated_region_read_either_way(backend: OcrBackend, turns: int) -> None:
    line = _view([((2, 2), "SMITH JOHN", 18)], (150, 26))
    view = np.zeros((200, 80), np.uint8)
    view[20:170, 30:56] = np.rot90(line, turns)
    words = read_regions(backend, [(view, Region((30, 20, 26, 150), rotated=True))])[0]
    # Both readings come back as separate lines; the right way up reads the name.
    lines: dict[int, list[str]] = {}
    for w in words:
        lines.setdefault(w.line, []).append(w.text)
    assert ["SMITH", "JOHN"] in lines.values()
    assert {w.line >= ROTATED_LINE_OFFSET for w in words} == {False, True}
    for w in words:  # boxes are in view coordinates, inside the vertical line
        x, _, bw, bh = w.box
        assert x >= 26
        assert x + bw <= 60
        if w.text in ("SMITH", "JOHN"):
            assert bh > bw


def test_empty_input_reads_nothing(backend: OcrBackend) -> None:
    assert read_regions(backend, []) == []
    assert backend.read(np.full((40, 40), 255, np.uint8)) == []


def test_auto_prefers_tesserocr() -> None:
    assert get_backend("auto").name == "tesserocr"
    assert get_backend("pytesseract").name == "pytesseract"


class _Counting:
    """A real backend that counts how often tesseract is called."""

    def __init__(self, inner: OcrBackend) -> None:
        self.name = inner.name
        self.inner = inner
        self.calls = 0

    def read(self, image: NDArray[np.uint8]) -> list[Word]:
        self.calls += 1
        return self.inner.read(image)


def test_repeated_crops_are_read_once_until_the_cache_is_cleared(backend: OcrBackend) -> None:
    view = _view([((4, 4), "DOE JANE", 16)], (160, 30))
    region = propose_text_regions(view)[0]
    counting = _Counting(backend)
    first = read_regions(counting, [(view, region)])
    assert counting.calls == 1
    shifted = np.zeros((60, 200), np.uint8)  # the same caption elsewhere on another image
    shifted[20:50, 30:190] = view
    moved = Region((region.box[0] + 30, region.box[1] + 20, region.box[2], region.box[3]))
    again = read_regions(counting, [(shifted, moved)])
    assert counting.calls == 1  # read from the cache, boxes moved with the caption
    assert [w.text for w in again[0]] == [w.text for w in first[0]]
    assert [w.box[0] for w in again[0]] == [w.box[0] + 30 for w in first[0]]
    clear_cache()
    read_regions(counting, [(view, region)])
    assert counting.calls == 2


class _DamagesALine:
    """A real backend that damages one line of the first page holding ``word``.

    Tesseract reads a stacked page as one block and now and then returns nothing for
    one of its lines (seen on a CT caption in a condensed font that it reads alone
    without fault), or reads one as noise at low confidence ("ratiquez aging Cntr" for
    "Rodriguez Imaging Center", held-out corpus seed 1485) that it reads well with other
    neighbours; ``damage`` does one or the other to that line's words, on demand.
    """

    def __init__(
        self, inner: OcrBackend, word: str, damage: Callable[[list[Word]], list[Word]]
    ) -> None:
        self.name = inner.name
        self.inner = inner
        self.word = word
        self.damage = damage
        self.damaged = False
        self.calls = 0

    def read(self, image: NDArray[np.uint8]) -> list[Word]:
        self.calls += 1
        words = self.inner.read(image)
        hit = {w.line for w in words if w.text == self.word}
        if hit and not self.damaged:
            self.damaged = True
            words = [w for w in words if w.line not in hit] + self.damage(
                [w for w in words if w.line in hit]
            )
        return words


def _dropped(words: list[Word]) -> list[Word]:
    return []


def _garbled(words: list[Word]) -> list[Word]:
    noise, confidence = ("ratiquez", "aging", "Cntr"), (0.0, 0.63, 0.44)
    return [Word(noise[i % 3], w.box, confidence[i % 3], w.line) for i, w in enumerate(words)]


def test_a_region_read_as_nothing_is_read_again(backend: OcrBackend) -> None:
    view = _view(
        [((4, 4), "SAUNDERS ERIN", 14), ((220, 4), "Davis Memorial Hospital", 14)], (460, 30)
    )
    regions = propose_text_regions(view)
    assert len(regions) == 2
    clear_cache()
    dropping = _DamagesALine(backend, "Memorial", _dropped)
    readings = read_regions(dropping, [(view, r) for r in regions])
    assert dropping.damaged
    assert dropping.calls == 2  # the stacked page, then the region it lost on its own
    assert {"SAUNDERS", "ERIN", "Davis", "Memorial", "Hospital"} <= {
        w.text for ws in readings for w in ws
    }


def test_regions_that_all_read_as_nothing_are_not_read_again(backend: OcrBackend) -> None:
    view = np.zeros((40, 200), np.uint8)
    clear_cache()
    counting = _Counting(backend)
    assert read_regions(
        counting, [(view, Region((10, 10, 80, 14))), (view, Region((100, 10, 80, 14)))]
    ) == [[], []]
    assert counting.calls == 1  # the same page again would read the same


def test_a_region_read_as_noise_is_read_again_and_the_better_reading_kept(
    backend: OcrBackend,
) -> None:
    view = _view(
        [((4, 4), "SAUNDERS ERIN", 14), ((220, 4), "Rodriguez Imaging Center", 14)], (460, 30)
    )
    regions = propose_text_regions(view)
    assert len(regions) == 2
    clear_cache()
    garbling = _DamagesALine(backend, "Imaging", _garbled)
    readings = read_regions(garbling, [(view, r) for r in regions])
    assert garbling.damaged
    assert garbling.calls == 2  # the stacked page, then the region read as noise on its own
    words = {w.text for ws in readings for w in ws}
    assert {"SAUNDERS", "ERIN", "Rodriguez", "Imaging", "Center"} <= words
    assert "ratiquez" not in words
    # read well the first time: one call
    clear_cache()
    counting = _Counting(backend)
    read_regions(counting, [(view, r) for r in regions])
    assert counting.calls == 1
