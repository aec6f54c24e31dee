"""Cheap text-line proposal: where in an 8-bit view might there be text?

Burned-in text is small, high-contrast and made of thin strokes. A white
top-hat (the view minus its grey opening) keeps thin bright strokes and drops
large bright structures (anatomy, gradients); a black top-hat does the same for
dark text on a light background. Thresholded strokes are grouped into lines by
a horizontal dilation, and each connected line becomes a :class:`Region`.
A second pass on the transposed view finds text rotated by 90 degrees.

Only the proposed regions go to OCR, which is what makes the pixel step fast:
a 2048 x 2048 radiograph costs tens of milliseconds here instead of a
full-image tesseract run.

Examples
--------
>>> import numpy as np
>>> view = np.zeros((60, 200), np.uint8)
>>> view[20:32, 10:90:6] = 255          # a row of thin bright "glyphs"
>>> [r.box for r in propose_text_regions(view)]
[(10, 20, 79, 12)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: Smallest and largest line height (pixels) accepted as text.
MIN_HEIGHT = 6
MAX_HEIGHT = 120
#: Widest column (pixels) taken whole as a line of text rotated by 90 degrees.
MAX_ROTATED_WIDTH = 48
#: Rendered text has sharp edges: the steepest row step is at least this share of its contrast.
MIN_SHARPNESS = 0.5
#: Views with more pixels than this are searched at half resolution (max/min pooled).
LARGE_IMAGE = 700_000
#: Row top-hat window (pixels): strokes and bars narrower than this along a row count as text.
STROKE = 15
#: A line needs this many stroke pixels, of which this many with twice the contrast threshold.
MIN_STROKE_PIXELS = 8
MIN_STRONG_PIXELS = 4


@dataclass(frozen=True)
class Region:
    """A proposed text line.

    Attributes
    ----------
    box
        ``(x, y, width, height)`` in view pixels.
    rotated
        ``True`` when the line runs vertically (text rotated by 90 degrees).
    bright
        ``True`` when the text is brighter than its background.
    """

    box: tuple[int, int, int, int]
    rotated: bool = False
    bright: bool = True


def stroke_contrast(
    view: NDArray[np.uint8], stroke: int = 15
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Return the row-wise white and black top-hats of ``view``.

    A row-wise top-hat keeps structures narrower than ``stroke`` pixels along a
    row (glyph strokes) and drops wider ones (anatomy, gradients, steps). One
    dimension costs half of a 2-D top-hat and loses only long horizontal bars,
    which the OCR crop padding puts back.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.zeros((20, 40), np.uint8); v[5:15, 9] = 200; v[5:15, 20:40] = 90
    >>> white, black = stroke_contrast(v)
    >>> int(white[10, 9]), int(white[10, 30]), int(black[10, 9])
    (200, 0, 0)
    """
    return _top_hat(view, stroke, True), _top_hat(view, stroke, False)


def _slide(
    a: NDArray[np.uint8], size: int, axis: int, *, low: bool, forward: bool
) -> NDArray[np.uint8]:
    """Running minimum (``low``) or maximum over ``size`` pixels along ``axis``.

    ``forward``: element ``i`` takes ``a[i : i + size]``, else ``a[i - size + 1 : i + 1]``
    (windows are cut at the border). Doubling spans keeps it to about log2(size)
    whole-array NumPy operations, several times faster than a generic filter.

    Examples
    --------
    >>> a = np.array([[5, 1, 7, 3, 9, 2]], np.uint8)
    >>> _slide(a, 3, 1, low=True, forward=True).tolist()
    [[1, 1, 3, 2, 2, 2]]
    >>> _slide(a, 3, 1, low=False, forward=False).tolist()
    [[5, 5, 7, 7, 9, 9]]
    """
    op = np.minimum if low else np.maximum
    out = np.array(a, dtype=np.uint8, copy=True)
    moved = np.moveaxis(out, axis, -1)
    span = 1
    while span < size:
        step = min(span, size - span)
        if forward:
            op(moved[..., :-step], moved[..., step:], out=moved[..., :-step])
        else:
            op(moved[..., step:], moved[..., :-step].copy(), out=moved[..., step:])
        span += step
    return out


def _top_hat(view: NDArray[np.uint8], stroke: int, bright: bool) -> NDArray[np.uint8]:
    """Row-wise white (``bright``) or black top-hat; see :func:`stroke_contrast`.

    An exact opening (closing): the running minimum (maximum) over forward
    windows, then the running maximum (minimum) over the backward windows.
    """
    padded = np.pad(view, ((0, 0), (stroke, stroke)), mode="edge")  # no border artefacts
    first = _slide(padded, stroke, 1, low=bright, forward=True)
    smooth = _slide(first, stroke, 1, low=not bright, forward=False)[:, stroke:-stroke]
    if bright:
        return np.asarray(view - smooth, dtype=np.uint8)
    return np.asarray(smooth - view, dtype=np.uint8)


def _has_light_background(view: NDArray[np.uint8]) -> bool:
    """Whether any part of the view is light enough to carry dark text (0.5% of pixels)."""
    sample = view[::4, ::4]
    return bool(np.count_nonzero(sample >= 160) >= 0.005 * sample.size)


#: Dark text is searched only in cells (this many pixels square) mostly at least this light.
LIGHT_CELL = 16
LIGHT_LEVEL = 96


def _light_cells(view: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """Pixels in or next to a cell whose background is light enough to carry dark text.

    A cell counts when at least half of it is :data:`LIGHT_LEVEL` or more (its
    median is): a banner, a form, a light panel. Speckle and dark anatomy do
    not, so the dark-text pass skips the dark gaps between bright specks.
    """
    b = LIGHT_CELL
    rows, cols = view.shape
    cell_rows, cell_cols = -(-rows // b), -(-cols // b)
    light = np.zeros((cell_rows * b, cell_cols * b), np.uint8)
    light[:rows, :cols] = view >= LIGHT_LEVEL
    share = light.reshape(cell_rows, b, cell_cols, b).sum(axis=(1, 3), dtype=np.int32)
    cells = ndimage.binary_dilation(share >= b * b // 2, structure=np.ones((3, 3), bool))
    pixels = np.repeat(np.repeat(cells, b, axis=0), b, axis=1)
    return np.asarray(pixels[:rows, :cols])


def _pool(view: NDArray[np.uint8], factor: int, bright: bool) -> NDArray[np.uint8]:
    """Shrink by ``factor`` keeping thin strokes: max-pool for light text, min-pool for dark."""
    if factor == 1:
        return view
    rows, cols = (view.shape[0] // factor) * factor, (view.shape[1] // factor) * factor
    pick = np.maximum if bright else np.minimum
    pooled = view[0:rows:factor, 0:cols:factor]
    for dy in range(factor):
        for dx in range(factor):
            if dy or dx:
                pooled = pick(pooled, view[dy:rows:factor, dx:cols:factor])
    return np.ascontiguousarray(pooled, dtype=np.uint8)


def _upscale(
    box: tuple[int, int, int, int], factor: int, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """A box found on a pooled view, in full-resolution pixels."""
    if factor == 1:
        return box
    x, y, w, h = (v * factor for v in box)
    return (x, y, min(w, shape[1] - x), min(h, shape[0] - y))


def _split_rows(inner: NDArray[np.bool_], bridge: int = 2) -> list[tuple[int, int]]:
    """Row ranges of the stroke pixels in ``inner``, split where whole rows are empty.

    Gaps of up to ``bridge`` empty rows do not split: the row top-hat drops the
    wide horizontal bars of large glyphs (S, E, T), leaving short gaps inside
    one line.
    """
    rows: list[bool] = np.asarray(inner.any(axis=1)).tolist()
    spans: list[tuple[int, int]] = []
    start = -1
    for i, filled in enumerate(rows):
        if filled and start < 0:
            start = i
        elif not filled and start >= 0:
            spans.append((start, i))
            start = -1
    if start >= 0:
        spans.append((start, len(rows)))
    merged: list[tuple[int, int]] = []
    for span in spans:
        if merged and span[0] - merged[-1][1] <= bridge:
            merged[-1] = (merged[-1][0], span[1])
        else:
            merged.append(span)
    return merged


def _line_boxes(
    mask: NDArray[np.bool_],
    gap: int,
    strong: NDArray[np.bool_] | None = None,
    min_height: int = MIN_HEIGHT,
    shrink: int = 1,
    pieces: list[tuple[int, int, int, int]] | None = None,
) -> list[tuple[int, int, int, int]]:
    """Group stroke pixels into lines; return candidate line boxes ``(x, y, w, h)``.

    With ``strong``, a line must also hold a few strong-contrast pixels.
    """
    grouped = _slide(mask.view(np.uint8), gap, 1, low=False, forward=False)
    grouped = _slide(grouped, 3, 0, low=False, forward=False)  # glyph parts split by a dropped bar
    labels, count = ndimage.label(grouped)
    if count == 0:
        return []
    sizes = np.bincount(labels[mask], minlength=count + 1)
    keep = sizes >= max(2, MIN_STROKE_PIXELS // shrink**2)
    if strong is not None:
        strong_pixels = np.bincount(labels[strong], minlength=count + 1)
        keep &= strong_pixels >= max(1, MIN_STRONG_PIXELS // shrink**2)
    boxes: list[tuple[int, int, int, int]] = []
    objects = ndimage.find_objects(labels)
    for index in np.flatnonzero(keep[1:]) + 1:
        sl = objects[index - 1]
        if sl is None:
            continue
        ys, xs = sl
        h, w = ys.stop - ys.start, xs.stop - xs.start
        if h < min_height - 1 or w < 2 or h > 8 * MAX_HEIGHT:
            continue
        inner = mask[sl] & (labels[sl] == index)
        for r0, r1 in _split_rows(inner):
            line = inner[r0:r1]
            cols = np.flatnonzero(line.any(axis=0))
            lh, lw = r1 - r0, int(cols[-1] - cols[0] + 1)
            tall = lw <= MAX_ROTATED_WIDTH // shrink and 2.5 * lw <= lh <= 40 * lw  # rotated
            if not (min_height - 1 <= lh <= MAX_HEIGHT or tall) or lw < 2:
                if pieces is not None and 2 <= lh < min_height - 1 and lw >= 2:
                    pieces.append((int(xs.start + cols[0]), int(ys.start + r0), lw, int(lh)))
                continue
            if lw > 40 * lh:  # rulers, scale bars, image borders
                continue
            fill = line.sum() / float(lh * lw)
            if not 0.04 <= fill <= 0.9:
                continue
            boxes.append((int(xs.start + cols[0]), int(ys.start + r0), lw, int(lh)))
    return boxes


def _vertical_lines(
    mask: NDArray[np.bool_],
    horizontal: list[tuple[int, int, int, int]],
    gap: int,
    min_height: int = MIN_HEIGHT,
) -> list[tuple[int, int, int, int]]:
    """Lines that run vertically: tall boxes made of stacked glyph-sized horizontal boxes.

    Only stacks of horizontal pieces are searched (transposed), not the whole
    mask: rotated glyphs show up as pieces one above the other.
    """
    found: list[tuple[int, int, int, int]] = []
    rows, cols = mask.shape
    for sx, sy, sw, sh in _stacks(horizontal, gap):
        x0, y0 = max(0, sx - gap), max(0, sy - gap)
        x1, y1 = min(cols, sx + sw + gap), min(rows, sy + sh + gap)
        area = np.ascontiguousarray(mask[y0:y1, x0:x1].T)
        for ly, lx, lh, lw in _line_boxes(area, gap, min_height=min_height):
            x, y, w, h = lx + x0, ly + y0, lw, lh
            if h < 2.5 * w or h < 3 * min_height:
                continue
            inside = [b for b in horizontal if _contains((x, y, w, h), b)]
            if len(inside) < 2:
                continue
            heights = sorted(b[3] for b in inside)
            widths = sorted(b[2] for b in inside)
            # Rotated glyphs: each horizontal piece is about as tall as the line is wide.
            if heights[len(heights) // 2] >= 0.5 * w and widths[len(widths) // 2] <= 1.5 * w:
                found.append((x, y, w, h))
    return found


def _stacks(boxes: list[tuple[int, int, int, int]], gap: int) -> list[tuple[int, int, int, int]]:
    """Bounding boxes of groups of 2+ boxes piled one above the other (x overlap, small gap)."""
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(boxes)), key=lambda i: boxes[i][1])
    for n, i in enumerate(order):
        ax, ay, aw, ah = boxes[i]
        for j in order[n + 1 :]:
            bx, by, bw, _ = boxes[j]
            if by - (ay + ah) > 2 * gap:
                break
            overlap = min(ax + aw, bx + bw) - max(ax, bx)
            if overlap >= 0.5 * min(aw, bw):
                parent[root(j)] = root(i)
    groups: dict[int, list[tuple[int, int, int, int]]] = {}
    for i, box in enumerate(boxes):
        groups.setdefault(root(i), []).append(box)
    stacks: list[tuple[int, int, int, int]] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        x0 = min(b[0] for b in members)
        y0 = min(b[1] for b in members)
        x1 = max(b[0] + b[2] for b in members)
        y1 = max(b[1] + b[3] for b in members)
        stacks.append((x0, y0, x1 - x0, y1 - y0))
    return stacks


def _contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
    ox, oy, ow, oh = outer
    ix, iy, iw, ih = inner
    return ox - 1 <= ix and oy - 1 <= iy and ix + iw <= ox + ow + 1 and iy + ih <= oy + oh + 1


def propose_text_regions(
    view: NDArray[np.uint8],
    *,
    rotated: bool = True,
    threshold: int = 48,
    gap: int = 7,
    strong_factor: bool = True,
    polarity: str = "both",
    pool: int | None = None,
) -> list[Region]:
    """Propose text lines in an 8-bit greyscale view.

    Parameters
    ----------
    view
        2-D ``uint8`` image (the OCR view of one frame).
    rotated
        Also look for vertical lines (text rotated by 90 degrees).
    threshold
        Minimum stroke contrast (grey levels) for a pixel to count as text.
    gap
        Largest horizontal gap (pixels) bridged between glyphs of one line.
    strong_factor
        Require a few pixels of twice the threshold contrast in each line.
    polarity
        ``"both"``, ``"bright"`` (light text only) or ``"dark"`` (dark text only).
    pool
        Search at ``1 / pool`` resolution; default :func:`pool_factor` of the
        view (pass the whole frame's factor when ``view`` is a piece of it).

    Returns
    -------
    list[Region]
        Candidate lines, bright-text lines first, each at most once.

    Examples
    --------
    >>> import numpy as np
    >>> v = np.full((40, 120), 255, np.uint8)
    >>> v[10:22, 10:60:5] = 0                     # dark glyphs on white
    >>> r = propose_text_regions(v)[0]
    >>> r.box, r.bright
    ((10, 10, 46, 12), False)
    """
    if view.ndim != 2 or min(view.shape) < MIN_HEIGHT:
        return []
    wanted = [b for b in (True, False) if polarity == "both" or b == (polarity == "bright")]
    if polarity == "both" and not _has_light_background(view):
        wanted = [True]  # dark text needs a light background somewhere
    factor = pool_factor(view.shape) if pool is None else pool
    min_height = max(3, MIN_HEIGHT // factor)
    step = max(2, -(-gap // factor))
    regions: list[Region] = []
    for bright in wanted:
        small = _pool(view, factor, bright)
        light = None if bright else _light_cells(small)
        if light is not None and not light.any():
            continue  # no light background: no dark text
        contrast = _top_hat(small, max(7, STROKE // factor), bright)
        mask = contrast >= threshold
        if light is not None:
            mask &= light
        if not mask.any():
            continue
        strong = contrast >= 2 * threshold if strong_factor else None
        pieces: list[tuple[int, int, int, int]] = []  # too short for a line; maybe rotated glyphs
        horizontal = _line_boxes(mask, step, strong, min_height, factor, pieces)
        vertical = _vertical_lines(mask, horizontal + pieces, step, min_height) if rotated else []
        for v in vertical:
            horizontal = [b for b in horizontal if not _contains(v, b)]
            regions.append(Region(_upscale(v, factor, view.shape), rotated=True, bright=bright))
        regions.extend(Region(_upscale(b, factor, view.shape), bright=bright) for b in horizontal)
    regions = [r for r in regions if _sharp(view, r.box)]
    if factor > 1:
        regions += _small_type_in_full(view, regions, threshold, gap, strong_factor)
    merged = merge_overlapping(regions)
    if not rotated:
        return join_words(merged)
    return join_columns(join_words([_mark_tall(r) for r in merged]))


def _small_type_in_full(
    view: NDArray[np.uint8],
    regions: list[Region],
    threshold: int,
    gap: int,
    strong_factor: bool,
) -> list[Region]:
    """Pieces of small lines that a pooled search lost, found again at full resolution.

    Pooling closes the 1-pixel gaps between the glyphs of small type; a run of
    them becomes a bar the row top-hat drops (the "2000" of a 7-pixel
    "2000-01-16" was lost, "01-16" was found). Around each line of up to
    :data:`SMALL_TEXT` pixels, the row band is searched again at full
    resolution, 8 line heights to either side; what it finds on the same row,
    no taller than 1.6 times the line, is added (the caller joins the pieces).
    """
    rows, cols = view.shape
    found: list[Region] = []
    for region in regions:
        x, y, w, h = region.box
        if region.rotated or h > SMALL_TEXT:
            continue
        x0, x1 = max(0, x - 8 * h), min(cols, x + w + 8 * h)
        y0, y1 = max(0, y - h), min(rows, y + 2 * h)
        band = view[y0:y1, x0:x1]
        for piece in propose_text_regions(
            band,
            rotated=False,
            threshold=threshold,
            gap=gap,
            strong_factor=strong_factor,
            polarity="bright" if region.bright else "dark",
            pool=1,
        ):
            px, py, pw, ph = piece.box
            overlap = min(py + ph, y - y0 + h) - max(py, y - y0)
            if overlap >= 0.5 * min(ph, h) and ph <= 1.6 * h:
                found.append(Region((px + x0, py + y0, pw, ph), bright=region.bright))
    return found


def pool_factor(shape: tuple[int, ...]) -> int:
    """Resolution divisor of the search: 2 for views over :data:`LARGE_IMAGE` pixels, else 1."""
    return 2 if shape[0] * shape[1] > LARGE_IMAGE else 1


@dataclass
class FrameChange:
    """Where a frame differs from what was last searched, on a grid of ``block``-pixel cells.

    Built by :func:`frame_change`; :meth:`touches` says whether a box holds a
    changed cell, :meth:`areas` gives the pieces of the frame to search again.
    """

    cells: NDArray[np.bool_]
    block: int
    shape: tuple[int, int]

    def any(self) -> bool:
        """Whether anything changed."""
        return bool(self.cells.any())

    def touches(self, box: tuple[int, int, int, int]) -> bool:
        """Whether ``box`` (view pixels) overlaps a changed cell."""
        x, y, w, h = box
        b = self.block
        return bool(self.cells[y // b : -(-(y + h) // b), x // b : -(-(x + w) // b)].any())

    def areas(self, margin: int = 2) -> list[tuple[int, int, int, int]]:
        """Boxes around the changed cells, grown by ``margin`` cells (a line's context)."""
        if not self.cells.any():
            return []
        grown = ndimage.binary_dilation(self.cells, iterations=margin) if margin else self.cells
        labels, _ = ndimage.label(grown)
        boxes: list[tuple[int, int, int, int]] = []
        b = self.block
        rows, cols = self.shape
        for ys, xs in (s for s in ndimage.find_objects(labels) if s is not None):
            x0, y0 = xs.start * b, ys.start * b
            x1, y1 = min(cols, xs.stop * b), min(rows, ys.stop * b)
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        return boxes


#: A pixel whose view value moved by more than this since it was last searched is searched again.
#: Text is proposed from a stroke contrast of 48: text that appears moves some of its pixels by
#: at least half of that; codec noise on lossy cines stays below it.
CHANGE_TOLERANCE = 16
CHANGE_BLOCK = 16


def frame_change(
    searched: NDArray[np.uint8],
    view: NDArray[np.uint8],
    *,
    tolerance: int = CHANGE_TOLERANCE,
    block: int = CHANGE_BLOCK,
) -> FrameChange:
    """Cells of ``view`` that differ from ``searched`` by more than ``tolerance`` anywhere.

    ``searched`` is what each cell looked like when it was last searched
    (update it with the changed cells of ``view`` after searching them):
    comparing with that rather than with the previous frame means a caption
    fading in slowly is still searched once it differs enough.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((64, 64), np.uint8); b = a.copy(); b[40, 5] = 200
    >>> change = frame_change(a, b)
    >>> change.touches((0, 32, 16, 16)), change.touches((32, 0, 8, 8)), change.areas(0)
    (True, False, [(0, 32, 16, 16)])
    """
    diff = np.maximum(searched, view) - np.minimum(searched, view) > tolerance
    rows, cols = diff.shape
    cell_rows, cell_cols = -(-rows // block), -(-cols // block)
    if (rows, cols) != (cell_rows * block, cell_cols * block):
        padded = np.zeros((cell_rows * block, cell_cols * block), bool)
        padded[:rows, :cols] = diff
        diff = padded
    cells = np.asarray(diff.reshape(cell_rows, block, cell_cols, block).any(axis=(1, 3)))
    return FrameChange(cells, block, (rows, cols))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection area over the smaller box's area."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return (w * h) / float(min(a[2] * a[3], b[2] * b[3]))


def merge_overlapping(regions: list[Region]) -> list[Region]:
    """Merge regions that overlap or touch.

    Overlapping: a bright line and the dark gaps between its glyphs.
    Touching, while the union stays one line high: pieces of one large glyph
    whose wide bars the row top-hat dropped.

    Examples
    --------
    >>> rs = [Region((0, 0, 20, 4)), Region((0, 4, 16, 14)), Region((40, 0, 10, 10))]
    >>> [r.box for r in merge_overlapping(rs)]
    [(0, 0, 20, 18), (40, 0, 10, 10)]
    """
    pending = sorted(regions, key=lambda r: -(r.box[2] * r.box[3]))
    merged = True
    while merged:
        merged = False
        kept: list[Region] = []
        for r in pending:
            for i, k in enumerate(kept):
                x0, y0 = min(k.box[0], r.box[0]), min(k.box[1], r.box[1])
                x1 = max(k.box[0] + k.box[2], r.box[0] + r.box[2])
                y1 = max(k.box[1] + k.box[3], r.box[1] + r.box[3])
                # Touching pieces join only when they stay one line high (not a growing blob).
                one_line = y1 - y0 <= 1.6 * max(k.box[3], r.box[3])
                if _overlap(k.box, r.box) > 0.6 or (one_line and _touch(k.box, r.box)):
                    # Still a vertical line only when the union is tall: a narrow glyph ("I",
                    # ",") marked rotated must not turn the whole caption it joins sideways.
                    tall = (k.rotated or r.rotated) and y1 - y0 >= 2.5 * (x1 - x0)
                    kept[i] = Region((x0, y0, x1 - x0, y1 - y0), tall, k.bright)
                    merged = True
                    break
            else:
                kept.append(r)
        pending = kept
    return sorted(pending, key=lambda r: (r.box[1], r.box[0]))


def _touch(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes that intersect or share an edge."""
    return (
        a[0] <= b[0] + b[2] and b[0] <= a[0] + a[2] and a[1] <= b[1] + b[3] and b[1] <= a[1] + a[3]
    )


def _mark_tall(region: Region) -> Region:
    """A tall, narrow region may be text rotated by 90 degrees even when its glyphs were too
    small to be seen stacking: mark it so OCR also reads it turned. A column narrower than
    the smallest glyph height is a glyph's stem (the "I" of a name, the side of an "H"),
    not a line: it stays horizontal so it joins its neighbours on the row."""
    _, _, w, h = region.box
    if not region.rotated and h >= 2.5 * w and MIN_HEIGHT <= w <= MAX_ROTATED_WIDTH:
        return Region(region.box, rotated=True, bright=region.bright)
    return region


def join_words(regions: list[Region]) -> list[Region]:
    """Join horizontal regions that continue one another on a line (gaps scale with the glyphs).

    Two regions join when their rows overlap by most of the smaller height,
    their heights are alike, and the gap between them is under 0.8 of a line
    height: large captions have wider letter and word gaps than the fixed
    dilation bridges. Lines of small type (up to :data:`SMALL_TEXT` pixels)
    also join across :data:`SMALL_GAP` line heights: a dash or dot between two
    pieces may be too faint to be found.

    Examples
    --------
    >>> rs = [Region((0, 10, 40, 30)), Region((50, 12, 40, 28)), Region((200, 10, 40, 30))]
    >>> [r.box for r in join_words(rs)]
    [(0, 10, 90, 30), (200, 10, 40, 30)]
    >>> [r.box for r in join_words([Region((20, 42, 22, 6)), Region((50, 42, 30, 8))])]
    [(20, 42, 60, 8)]
    """
    lines = sorted((r for r in regions if not r.rotated), key=lambda r: r.box[0])
    joined = [Region(b, False, r.bright) for b, r in _join_boxes(lines)]
    joined.extend(r for r in regions if r.rotated)
    return sorted(joined, key=lambda r: (r.box[1], r.box[0]))


def join_columns(regions: list[Region]) -> list[Region]:
    """:func:`join_words` for rotated regions: pieces of one vertical line, one above the other.

    A short piece that is taller than wide but not tall enough to count as
    rotated on its own (the "Lee," of a rotated "Lee, Terry": 30 x 14 pixels)
    joins a rotated piece it continues, or other such pieces into a column
    at least 2.5 times as tall as wide; alone, it stays as it was.

    Examples
    --------
    >>> rs = [Region((10, 0, 16, 120), True), Region((12, 128, 12, 50), True)]
    >>> [r.box for r in join_columns(rs)]
    [(10, 0, 16, 178)]
    >>> rs = [Region((14, 768, 14, 38), True), Region((14, 810, 14, 30)), Region((60, 810, 14, 30))]
    >>> [(r.box, r.rotated) for r in join_columns(rs)]
    [((14, 768, 14, 72), True), ((60, 810, 14, 30), False)]
    >>> [r.box for r in join_columns([Region((16, 806, 16, 36)), Region((16, 848, 14, 30))])]
    [(16, 806, 16, 72)]
    """

    def upright_piece(r: Region) -> bool:
        _, _, w, h = r.box
        return not r.rotated and h >= 1.5 * w and MIN_HEIGHT <= w <= MAX_ROTATED_WIDTH

    pieces = [r for r in regions if r.rotated or upright_piece(r)]
    flipped = sorted((Region(transpose(r.box), r.rotated, r.bright) for r in pieces),
                     key=lambda r: r.box[0])  # fmt: skip
    joined: list[Region] = []
    used: set[int] = set()
    for box, first in _join_boxes(flipped):
        members = [i for i, r in enumerate(pieces) if _contains(transpose(box), r.box)]
        column = len(members) > 1 and box[2] >= 2.5 * box[3]  # (box is flipped)
        if column or any(pieces[i].rotated for i in members):
            joined.append(Region(transpose(box), True, first.bright))
            used.update(members)
    joined.extend(r for i, r in enumerate(pieces) if i not in used and not r.rotated)
    joined.extend(r for r in regions if not r.rotated and not upright_piece(r))
    return sorted(joined, key=lambda r: (r.box[1], r.box[0]))


def transpose(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The box with x and y swapped (a vertical line as a horizontal one)."""
    return (box[1], box[0], box[3], box[2])


#: Line height (pixels) up to which pieces of a line join across a gap of
#: :data:`SMALL_GAP` line heights rather than 0.8.
SMALL_TEXT = 12
SMALL_GAP = 1.5


def _join_boxes(lines: list[Region]) -> list[tuple[tuple[int, int, int, int], Region]]:
    """Join boxes (sorted by x) that continue one another along a row."""
    joined: list[tuple[tuple[int, int, int, int], Region]] = []
    for r in lines:
        x, y, w, h = r.box
        for i, (k, first) in enumerate(joined):
            kx, ky, kw, kh = k
            overlap = min(y + h, ky + kh) - max(y, ky)
            height = max(h, kh)
            # small type: a thin glyph between two pieces ("-" in "1969-05-10") can be too faint
            # to be found, which leaves a gap of about one glyph
            reach = (SMALL_GAP if height <= SMALL_TEXT else 0.8) * height
            if (
                overlap >= 0.6 * min(h, kh)
                and 0.6 <= h / kh <= 1.6
                and x - (kx + kw) <= reach
                and x >= kx
            ):
                x0, y0 = kx, min(y, ky)
                x1, y1 = max(kx + kw, x + w), max(ky + kh, y + h)
                joined[i] = ((x0, y0, x1 - x0, y1 - y0), first)
                break
        else:
            joined.append((r.box, r))
    return joined


def _sharp(view: NDArray[np.uint8], box: tuple[int, int, int, int]) -> bool:
    """Whether the crop has crisp edges, as rendered glyphs do (anatomy and speckle do not)."""
    x, y, w, h = box
    crop = view[y : y + h, x : x + w].astype(np.int16)
    contrast = int(crop.max()) - int(crop.min())
    if contrast == 0 or crop.shape[1] < 2:
        return False
    steps = np.abs(np.diff(crop, axis=1))
    # The 98th percentile of the steps reaches the bar (a count: no sort; it errs on the side
    # of "sharp" where the percentile would interpolate between two neighbours).
    k = int((steps.size - 1) * 0.98)
    return bool(np.count_nonzero(steps >= MIN_SHARPNESS * contrast) >= steps.size - k - 1)
