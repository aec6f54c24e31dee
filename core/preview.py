"""Before/after pictures of the pixel step, for people who would rather look than read.

:func:`make_preview` renders one frame of the original and of the
de-identified dataset side by side as a PNG, with every masked box outlined on
both halves. :func:`preview_cli` is ``dicomscrub preview FILE -o before_after.png``:
it runs the engine in memory on one file and writes the picture.

The left half shows the original pixels, PHI included: a preview is for the
person running the tool, not for an audit or a log. ``make_preview(None, after,
entities)`` draws the de-identified frame alone (boxes outlined), for places
that must not hold PHI (Dagster metadata, dashboards);
``dicomscrub preview --redacted-only`` writes that picture.

Examples
--------
>>> import numpy as np
>>> from pydicom.dataset import Dataset, FileMetaDataset
>>> from pydicom.uid import ExplicitVRLittleEndian
>>> from dicomscrub.core.results import Entity
>>> ds = Dataset(); ds.file_meta = FileMetaDataset()
>>> ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
>>> ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 48, 1, "MONOCHROME2"
>>> ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
>>> ds.PixelData = np.arange(32 * 48, dtype=np.uint8).tobytes()
>>> box = Entity(location="pixel", tag="(7FE0,0010)", keyword="PixelData", entity_type="TEXT",
...              detector="ocr", action="masked", value_hmac="00", frame=0, box=(2, 2, 10, 6))
>>> png = make_preview(ds, ds, [box])
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
>>> from PIL import Image
>>> import io
>>> Image.open(io.BytesIO(make_preview(None, ds, [box]))).size   # the redacted frame only
(48, 32)
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset

from .errors import ConfigurationError, DeidError
from .pixels import Decoded, decode, ocr_views
from .results import Entity

#: Outline colour of masked boxes, and of fixed regions / overlays.
OUTLINE = (255, 40, 40)
#: Pictures taller than this are scaled down.
MAX_HEIGHT = 1024
_GAP = 8


def _frame_rgb(ds: Dataset, frame: int) -> NDArray[np.uint8]:
    """One frame as 8-bit RGB for display (grey images via the OCR view's stretch)."""
    decoded = decode(ds)
    count = decoded.frames.shape[0]
    if not 0 <= frame < count:
        raise ConfigurationError(f"frame {frame} is out of range: the file has {count} frame(s)")
    one = Decoded(decoded.frames[frame : frame + 1], decoded.photometric, decoded.source)
    if one.frames.ndim == 4 or one.photometric == "PALETTE COLOR":
        rgb = _colour(ds, one)
    else:
        grey = ocr_views(ds, one)[0]
        rgb = np.repeat(grey[..., np.newaxis], 3, axis=-1)
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _colour(ds: Dataset, one: Decoded) -> NDArray[np.uint8]:
    frame = one.frames[0]
    if one.photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        frame = apply_color_lut(frame, ds)
    elif one.photometric.startswith("YBR"):
        from pydicom.pixels.processing import convert_color_space

        frame = convert_color_space(frame, one.photometric, "RGB")
    top = float(frame.max()) or 1.0
    if top <= 255:
        return np.asarray(frame, dtype=np.uint8)
    return np.asarray(np.clip(frame / top * 255.0, 0, 255), dtype=np.uint8)


def make_preview(
    before: Dataset | None, after: Dataset, entities: Iterable[Entity], frame: int = 0
) -> bytes:
    """Return a PNG: ``before`` and ``after`` side by side, masked boxes outlined.

    With ``before=None`` the PNG shows only the de-identified frame, boxes
    outlined: no original pixels, so no burned-in PHI (what an event log or a
    shared dashboard may hold).

    Parameters
    ----------
    before
        The original dataset, or ``None`` for the de-identified frame alone.
    after
        The de-identified dataset (same geometry as ``before``).
    entities
        Entity records; pixel entities of ``frame`` with a box are outlined.
    frame
        The frame to show.

    Raises
    ------
    ConfigurationError
        ``frame`` is out of range.
    DeidError
        A dataset cannot be decoded.
    """
    right = _frame_rgb(after, frame)
    left = _frame_rgb(before, frame) if before is not None else None
    if left is None:
        canvas = Image.fromarray(right)
        offsets = [0]
    else:
        height = max(left.shape[0], right.shape[0])
        width = left.shape[1] + _GAP + right.shape[1]
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        canvas.paste(Image.fromarray(left), (0, 0))
        offsets = [0, left.shape[1] + _GAP]
        canvas.paste(Image.fromarray(right), (offsets[1], 0))
    draw = ImageDraw.Draw(canvas)
    for e in entities:
        if e.location != "pixel" or e.box is None or e.frame != frame:
            continue
        if not e.tag.startswith("(7FE0"):  # overlay boxes live in another plane
            continue
        x, y, w, h = e.box
        for dx in offsets:
            draw.rectangle([x + dx, y, x + dx + w - 1, y + h - 1], outline=OUTLINE, width=2)
    if canvas.height > MAX_HEIGHT:
        scale = MAX_HEIGHT / canvas.height
        size = (max(1, round(canvas.width * scale)), MAX_HEIGHT)
        canvas = canvas.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def preview_cli(
    file: str,
    out_png: str,
    *,
    policy: str | None = None,
    secret_env: str = "DICOMSCRUB_SECRET",
    ephemeral_secret: bool = False,
    frame: int = 0,
    redacted_only: bool = False,
) -> int:
    """``dicomscrub preview FILE -o PNG``: de-identify ``file`` in memory, write the picture.

    ``redacted_only`` draws the de-identified frame alone (no original pixels).

    Returns 0 when the PNG was written, 1 when the file could not be
    de-identified (the reason is printed, without PHI). Configuration problems
    raise :class:`ConfigurationError` (the CLI exits 2).
    """
    import copy

    import pydicom
    from pydicom.errors import InvalidDicomError

    from .pipeline import Engine

    engine = Engine.from_env(policy, secret_env=secret_env, ephemeral_secret=ephemeral_secret)
    try:
        before = pydicom.dcmread(file)
    except (OSError, InvalidDicomError) as exc:
        print(f"dicomscrub: cannot read {file}: {type(exc).__name__}", file=sys.stderr)
        return 1
    if "PixelData" not in before:
        print(f"dicomscrub: {file} has no pixel data to preview", file=sys.stderr)
        return 1
    try:
        result = engine.deidentify(copy.deepcopy(before))
        original = None if redacted_only else before
        png = make_preview(original, result.dataset, result.entities, frame=frame)
    except DeidError as exc:
        print(f"dicomscrub: {file}: {exc}", file=sys.stderr)
        return 1
    Path(out_png).write_bytes(png)
    masked = sum(1 for e in result.entities if e.location == "pixel" and e.frame == frame)
    print(f"wrote {out_png}: frame {frame}, {masked} masked box(es)")
    return 0
