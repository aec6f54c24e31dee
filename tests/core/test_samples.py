"""The synthetic corpus generator: determinism, coverage, an answer key that matches the files."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    RLELossless,
)

from dicomscrub.core import sample_images
from dicomscrub.core.answer_key import load_answer_key, load_masks, needle_pattern, resolve
from dicomscrub.core.cli import main
from dicomscrub.core.errors import ConfigurationError
from dicomscrub.core.evaluate import dataset_strings
from dicomscrub.core.samples import generate_corpus


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    generate_corpus(out, seed=0)
    return out


@pytest.fixture(scope="module")
def key(corpus: Path) -> dict[str, Any]:
    return load_answer_key(corpus)


@pytest.fixture(scope="module")
def datasets(corpus: Path, key: dict[str, Any]) -> dict[str, pydicom.Dataset]:
    return {f["path"]: pydicom.dcmread(corpus / "dicom" / f["path"]) for f in key["files"]}


def test_same_seed_gives_byte_identical_corpus(corpus: Path, tmp_path: Path) -> None:
    generate_corpus(tmp_path / "again", seed=0)
    generate_corpus(tmp_path / "other", seed=1)
    first = _digest(corpus)
    assert _digest(tmp_path / "again") == first
    other = _digest(tmp_path / "other")
    assert other.keys() == first.keys()
    assert all(other[name] != first[name] for name in first)


def test_default_corpus_covers_every_kind_and_encoding(
    key: dict[str, Any], datasets: dict[str, pydicom.Dataset]
) -> None:
    files = key["files"]
    assert {f["kind"] for f in files} == {"ct", "mr", "us", "us_cine", "dx", "cr", "sc", "sr"}
    syntaxes = {str(ds.file_meta.TransferSyntaxUID) for ds in datasets.values()}
    assert {
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        RLELossless,
        JPEGBaseline8Bit,
        JPEG2000Lossless,
    } <= syntaxes
    photometric = {ds.get("PhotometricInterpretation") for ds in datasets.values()}
    assert {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL_422"} <= photometric
    ct = [ds for ds in datasets.values() if ds.Modality == "CT"]
    mr = [ds for ds in datasets.values() if ds.Modality == "MR"]
    assert all(ds.PixelRepresentation == 1 and ds.RescaleIntercept == -1024 for ds in ct)
    assert all(ds.PixelRepresentation == 0 for ds in mr)
    cine = next(f for f in files if f["kind"] == "us_cine")
    assert cine["frames"] == 10
    for f in files:
        ds = datasets[f["path"]]
        if f["rows"]:
            arr = ds.pixel_array
            frames = f["frames"]
            shape = (f["rows"], f["columns"])
            expected = ((frames,) if frames > 1 else ()) + shape
            expected += (3,) if f["samples_per_pixel"] == 3 else ()
            assert arr.shape == expected, f["path"]
        else:
            assert "PixelData" not in ds
            assert ds.Modality == "SR"


def test_every_planted_value_is_where_the_key_says(
    key: dict[str, Any], datasets: dict[str, pydicom.Dataset]
) -> None:
    wheres = set()
    for f in key["files"]:
        ds = datasets[f["path"]]
        strings = dataset_strings(ds)
        for planted in f["header_phi"]:
            wheres.add(planted["where"])
            # the needles are in the file (this is what the scorer searches for)
            pattern = needle_pattern(planted["needles"])
            assert any(pattern.search(text) for _, text in strings), planted["path"]
            if planted["where"] == "private":
                continue  # private elements may read back as UN bytes (implicit VR)
            elem = resolve(ds, planted["path"])
            assert elem is not None, planted["path"]
            assert planted["value"] in str(elem.value)
        for text in f["free_text"]:
            elem = resolve(ds, text["path"])
            assert elem is not None
            assert str(elem.value) == text["value"]
            for word in text["keep"] + text["phi"]:
                assert word in text["value"]
        for item in f["preserve"]:
            assert resolve(ds, item["path"]) is not None
        for entry in f["uids"]:
            elem = resolve(ds, entry["path"])
            assert elem is not None
            assert str(elem.value) == entry["value"]
    assert wheres == {"top", "sequence", "private", "free_text"}


def test_private_phi_survives_implicit_vr_as_unknown_bytes(
    key: dict[str, Any], datasets: dict[str, pydicom.Dataset]
) -> None:
    implicit = [
        f
        for f in key["files"]
        if datasets[f["path"]].file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    ]
    assert implicit
    ds = datasets[implicit[0]["path"]]
    account = next(p for p in implicit[0]["header_phi"] if p["path"] == "(0029,1010)")
    elem = ds[0x00291010]
    assert elem.VR == "UN"
    assert account["value"].encode() in elem.value


def test_uids_are_shared_like_real_studies(
    key: dict[str, Any], datasets: dict[str, pydicom.Dataset]
) -> None:
    by_study: dict[str, set[str]] = {}
    sops = {str(ds.SOPInstanceUID) for ds in datasets.values()}
    assert len(sops) == len(datasets)
    for f in key["files"]:
        ds = datasets[f["path"]]
        by_study.setdefault(f["study"], set()).add(str(ds.StudyInstanceUID))
        for entry in f["uids"]:
            if entry["role"] == "reference" and "SOPInstanceUID" in entry["path"]:
                assert entry["value"] in sops, entry["path"]
    assert all(len(uids) == 1 for uids in by_study.values())
    assert len({next(iter(u)) for u in by_study.values()}) == len(by_study)
    ct = [ds for ds in datasets.values() if ds.Modality == "CT"]
    assert len({ds.SeriesInstanceUID for ds in ct}) == 1
    assert len({ds.FrameOfReferenceUID for ds in ct}) == 1
    assert "ReferencedImageSequence" in ct[1]
    roles = _role_counts(key)
    assert roles["reference"] >= 10
    assert roles["frame_of_reference"] >= 5


def _role_counts(key: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in key["files"]:
        for entry in f["uids"]:
            counts[entry["role"]] = counts.get(entry["role"], 0) + 1
    return counts


def test_glyph_masks_are_the_rendered_text(corpus: Path, key: dict[str, Any]) -> None:
    masks = load_masks(corpus)
    items = [item for f in key["files"] for item in f["burned_in"]]
    assert len(masks) == len(items)
    fonts = {item["font"] for item in items}
    assert {"dejavu-sans-mono", "dejavu-sans", "dejavu-serif", "pillow-default"} <= fonts
    assert "pillow-bitmap" in fonts
    assert {item["rotation"] for item in items} >= {0, 90, 270}
    labels = {item["text"] for item in items if not item["is_phi"]}
    assert {"L", "R", "WW 400 WL 40", "5.0mm", "Se:2 Im:1", "MI 0.8 TIS 0.4"} <= labels
    for item in items:
        mask = masks[item["mask"]]
        _x, _y, w, h = item["box"]
        assert mask.shape == (h, w)
        assert mask.any()
        alpha = sample_images.render_alpha(item["text"], item["font"], item["size"],
                                           item["rotation"])  # fmt: skip
        np.testing.assert_array_equal(mask, alpha >= 0.5)


def test_burned_in_text_is_in_the_pixels(
    key: dict[str, Any], datasets: dict[str, pydicom.Dataset], corpus: Path
) -> None:
    """Glyph pixels differ from the pixels just around the box (the text is visible)."""
    masks = load_masks(corpus)
    for f in key["files"]:
        if not f["rows"] or f["transfer_syntax"] == JPEGBaseline8Bit:
            continue
        arr = datasets[f["path"]].pixel_array
        arr = arr if f["frames"] > 1 else arr[np.newaxis]
        for item in f["burned_in"]:
            x, y, w, h = item["box"]
            frame = item["frames"][0]
            glyphs = arr[frame, y : y + h, x : x + w][masks[item["mask"]]].astype(float)
            around = arr[frame, y : y + h, x : x + w][~masks[item["mask"]]].astype(float)
            assert abs(glyphs.mean() - around.mean()) > 10, (f["path"], item["text"])
        # the image is not a flat field: anatomy-like texture outside the text
        assert float(np.std(arr.astype(float))) > 10


def test_cine_overlay_on_every_frame_and_counter_per_frame(key: dict[str, Any]) -> None:
    cine = next(f for f in key["files"] if f["kind"] == "us_cine")
    overlay = [i for i in cine["burned_in"] if len(i["frames"]) == 10]
    counters = [i for i in cine["burned_in"] if len(i["frames"]) == 1]
    assert {i["type"] for i in overlay if i["is_phi"]} >= {"PERSON", "ID", "ORG", "DATE"}
    assert sorted(i["frames"][0] for i in counters) == list(range(10))
    assert all(not i["is_phi"] and "/10" in i["text"] for i in counters)


def test_missing_font_fails_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sample_images.FONT_FILES, "dejavu-serif", "NoSuchFont-Regular.ttf")
    sample_images.load_font.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="fonts-dejavu-core"):
            sample_images.check_fonts()
        # a held-out face (benchmarks/quality.py --faces) comes with the other package
        monkeypatch.setitem(sample_images.FONT_FILES, "dejavu-serif", "DejaVuSerif-Nosuch.ttf")
        with pytest.raises(ConfigurationError, match="fonts-dejavu-extra"):
            sample_images.check_fonts()
    finally:
        sample_images.load_font.cache_clear()


def test_cli_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["samples", "generate", str(tmp_path / "c"), "--seed", "3", "--patients", "1"])
    assert rc == 0
    assert "5 files" in capsys.readouterr().out
    key = json.loads((tmp_path / "c" / "answer_key.json").read_text())
    assert key["generator"]["seed"] == 3
    assert len(key["files"]) == 5
    assert main(["samples", "generate", str(tmp_path / "d"), "--patients", "0"]) == 2


def test_us_banner_fits_long_names_on_a_narrow_cine() -> None:
    """A long name on a 480-pixel cine once made ``samples generate --seed 11 --patients 5``
    fail (its name touched the MRN): it now moves and shrinks to fit, for every patient."""
    from dicomscrub.core.samples import _make_people, _us_banner

    sizes = []
    for seed in (11, 0, 1, 2):
        for study in _make_people(seed, 5, 1):
            canvas = sample_images.Canvas(np.zeros((2, 360, 480, 3)), max_value=255, frames=2)
            _us_banner(canvas, study, outside_id=True, serif=False, frames=2)  # no ValueError
            name = next(i for i in canvas.items if i.kind == "PERSON")
            sizes.append(name.size)
    assert min(sizes) < 14  # shrunk where needed ...
    assert max(sizes) == 14  # ... else as before


def test_quality_held_out_faces_are_other_faces_of_every_corpus_font() -> None:
    """``benchmarks/quality.py --faces``: each held-out set maps every corpus font name to
    another DejaVu face that is installed, so the held-out sweeps stay runnable."""
    import importlib.util

    from support import REPO_ROOT

    spec = importlib.util.spec_from_file_location("quality", REPO_ROOT / "benchmarks/quality.py")
    assert spec is not None
    assert spec.loader is not None
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    assert set(quality.HELD_OUT_FACES) == {"held-out-1", "held-out-2"}
    for faces in quality.HELD_OUT_FACES.values():
        assert set(faces) == set(sample_images.FONT_FILES)
        for name, filename in faces.items():
            assert filename != sample_images.FONT_FILES[name]
            folders = sample_images.FONT_DIRS
            assert any(Path(folder, filename).is_file() for folder in folders), filename


@pytest.mark.parametrize("kind", ["dates", "names"])
def test_text_probe_counts_masked_and_readable_values(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``benchmarks/text_probe.py`` through the real engine: in a corpus font every drawn
    date or name that the header holds is masked; with masking off, every value drawn (in
    the header or not) counts as leaked."""
    import importlib.util

    from support import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "text_probe", REPO_ROOT / "benchmarks/text_probe.py"
    )
    assert spec is not None
    assert spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "text_probe", probe)  # its dataclass looks itself up
    spec.loader.exec_module(probe)
    monkeypatch.setenv("DICOMSCRUB_SECRET", "probe")
    face = {"DejaVuSansMono.ttf"}
    drawn = {"dates": 10, "names": 8}[kind]  # forms x (in the header, not in it)
    masked = probe.run(kind, "tesserocr", [14], 1, 7, face)
    assert sum(masked["total"].values()) == drawn
    in_header = [n for key, n in masked["leaked"].items() if key[0] == "in the header"]
    assert sum(in_header) == 0, masked["examples"]
    off = probe.run(kind, "tesserocr", [14], 1, 7, face, pixels_policy={"mode": "off"})
    assert sum(off["leaked"].values()) == drawn
