"""The preview image shown with a de-identified partition in the Dagster UI.

It is the core's :func:`dicomscrub.core.preview.make_preview` for the file the
run picked (``PartitionResult.sample``, preferring one whose pixels were
masked), on the frame with the most masked boxes, every masked box outlined.

Dagster metadata lives in the instance's event log, readable by everyone with
access to the UI, so the default shows only the **redacted** half (the output
as written, boxes outlined). ``before_after`` adds the original pixels, burned-in
PHI included: use it only for synthetic data (as ``make demo`` does) or on an
instance held to the same access rules as the sources.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from typing import Any, Literal

PreviewMode = Literal["redacted", "before_after", "off"]

#: Previews taller than this are scaled down before they go into the event log.
MAX_HEIGHT = 512

log = logging.getLogger(__name__)


def partition_preview(
    sample: tuple[str, str] | None,
    entity_rows: Any,
    *,
    mode: PreviewMode = "redacted",
    storage_options: dict[str, Any] | None = None,
) -> bytes | None:
    """Return a PNG preview of the sample file, or ``None`` when there is nothing to show.

    Never raises for a file problem: a preview is a courtesy, the run's result
    does not depend on it (the reason is logged by exception type only).

    Parameters
    ----------
    sample
        ``(source, output)`` from ``PartitionResult.sample``.
    entity_rows
        The partition's ``entities`` audit (a DataFrame); rows of the sample's
        source with a box become outlines.
    mode
        ``redacted`` (the output only), ``before_after`` (original beside it)
        or ``off``.
    storage_options
        fsspec options for reading the two files.
    """
    if mode == "off" or sample is None:
        return None
    source, output = sample
    try:
        return _render(source, output, entity_rows, mode, storage_options)
    except Exception as exc:  # a preview must never fail the partition
        log.warning("no preview for this partition (%s)", type(exc).__name__)
        return None


def _render(
    source: str,
    output: str,
    entity_rows: Any,
    mode: PreviewMode,
    storage_options: dict[str, Any] | None,
) -> bytes | None:
    import pydicom
    from PIL import Image

    from dicomscrub.core.preview import make_preview
    from dicomscrub.core.storage import filesystem

    with filesystem(output, storage_options).open(output, "rb") as handle:
        after = pydicom.dcmread(handle)
    if "PixelData" not in after:
        return None
    boxes = _boxes(entity_rows, source)
    frame = Counter(e.frame for e in boxes).most_common(1)[0][0] if boxes else 0
    if mode == "before_after":
        with filesystem(source, storage_options).open(source, "rb") as handle:
            before = pydicom.dcmread(handle)
        png = make_preview(before, after, boxes, frame=frame)
        image: Image.Image = Image.open(io.BytesIO(png))
    else:  # the output alone: no original pixels in the event log
        png = make_preview(None, after, boxes, frame=frame)
        image = Image.open(io.BytesIO(png))
    if image.height > MAX_HEIGHT:
        scale = MAX_HEIGHT / image.height
        image = image.resize((max(1, round(image.width * scale)), MAX_HEIGHT))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _boxes(entity_rows: Any, source: str) -> list[Any]:
    """Pixel entities of ``source`` with a box, as the core's Entity records."""
    from dicomscrub.core.results import Entity

    if entity_rows is None or len(entity_rows) == 0:
        return []
    rows = entity_rows[
        (entity_rows["source"] == source)
        & (entity_rows["location"] == "pixel")
        & entity_rows["box"].notna()
        & entity_rows["frame"].notna()
    ]
    return [
        Entity(
            location="pixel",
            tag=str(row.tag),
            keyword=str(row.keyword),
            entity_type=str(row.entity_type),
            detector=row.detector,
            action=row.action,
            value_hmac="",
            frame=int(row.frame),
            box=(int(row.box[0]), int(row.box[1]), int(row.box[2]), int(row.box[3])),
        )
        for row in rows.itertuples(index=False)
    ]
