"""``dicomscrub preview``: before/after PNG with the masked boxes outlined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from dicomscrub.core.cli import main
from dicomscrub.core.errors import ConfigurationError
from dicomscrub.core.preview import OUTLINE, make_preview

pytestmark = pytest.mark.shared_data


def test_preview_command_writes_side_by_side_png(shared_dicom: Path, tmp_path: Path) -> None:
    src = shared_dicom / "presidio/2_ORIGINAL.dcm"
    out = tmp_path / "before_after.png"
    assert main(["preview", str(src), "-o", str(out)]) == 0
    img = np.asarray(Image.open(out).convert("RGB"))
    ds = pydicom.dcmread(src)
    assert img.shape[0] == ds.Rows
    assert img.shape[1] == 2 * ds.Columns + 8
    red = np.all(img == OUTLINE, axis=-1)
    left, right = red[:, : ds.Columns], red[:, ds.Columns + 8 :]
    assert left.sum() > 50  # boxes outlined on both halves, in the top rows (the caption)
    assert right.sum() == left.sum()
    assert np.flatnonzero(left.any(axis=1)).max() < 60


def test_preview_of_a_file_without_pixels_fails(shared_dicom: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    assert (
        main(["preview", str(shared_dicom / "presidio/0_ORIGINAL_no_pixels.dcm"), "-o", str(out)])
        == 1
    )
    assert not out.exists()


def test_frame_out_of_range_is_a_usage_error(shared_dicom: Path) -> None:
    ds = pydicom.dcmread(shared_dicom / "pydicom-data/OBXXXX1A_rle_2frame.dcm")
    assert make_preview(ds, ds, [], frame=1)[:4] == b"\x89PNG"
    with pytest.raises(ConfigurationError):
        make_preview(ds, ds, [], frame=2)


def test_redacted_only_preview_holds_no_original_pixels(shared_dicom: Path, tmp_path: Path) -> None:
    """--redacted-only: one panel, the output frame with its boxes; the burned-in name is gone."""
    import pytesseract

    src = shared_dicom / "presidio/2_ORIGINAL.dcm"
    both, alone = tmp_path / "both.png", tmp_path / "alone.png"
    assert main(["preview", str(src), "-o", str(both)]) == 0
    assert main(["preview", str(src), "-o", str(alone), "--redacted-only"]) == 0
    ds = pydicom.dcmread(src)
    img = Image.open(alone).convert("RGB")
    assert img.size == (ds.Columns, ds.Rows)
    assert np.all(np.asarray(img) == OUTLINE, axis=-1).sum() > 50  # boxes outlined

    def caption(png: Image.Image) -> str:  # the top rows, where the name and birth date are
        top = png.convert("L").crop((0, 0, ds.Columns, 60))
        return str(pytesseract.image_to_string(top.resize((2 * top.width, 2 * top.height))))

    assert "KAUFMAN" in caption(Image.open(both)).upper()  # the original half shows it
    after = caption(img).upper()
    assert "KAUFMAN" not in after
    assert "1943" not in after
