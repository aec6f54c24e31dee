"""Burned-in dates or names in every DejaVu face: how many does dicomscrub leave readable?

The corpus (``make quality``) draws its text in four fonts; OCR misreads text in other
type in ways no corpus layout shows. This probe draws PHI in every DejaVu face installed
(Debian ``fonts-dejavu-core`` and ``fonts-dejavu-extra``: 21 text faces) at small sizes,
on a strip of smooth background, as an 8-bit DICOM image:

* ``--kind dates``: the five date forms the corpus uses (``07/22/1943``,
  ``22-JUL-1943``, ``22.07.1943``, ``1943-07-22``, ``Jul 22, 1943``) of random dates;
* ``--kind names``: a random patient's name as ``DOE^JANE``, ``DOE, JANE`` and
  ``Jane Doe``, and an MRN of 8 to 10 digits.

Each image goes through the whole engine twice: once with the values in the header
(StudyDate; PatientName and PatientID), so that they are the record's own identifiers,
and once without (patterns, shapes and NER only). A value counts as leaked when any pixel
of its glyphs is unchanged in the output.

Run (about 4 minutes per kind for the default sizes with tesserocr)::

    DICOMSCRUB_SECRET=x .venv/bin/python benchmarks/text_probe.py [--kind names]
        [--backend pytesseract] [--sizes 10,12,14] [--count 4] [--seed 7]
        [--faces DejaVuSans.ttf,...] [--json]

It prints leaks per form, per size and per face, and each leaked value (PHI of made-up
people) with the entity types the engine masked on its image.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from scipy import ndimage

ROWS, COLUMNS = 60, 1400


@dataclass(frozen=True)
class Item:
    """One made-up identity: what its header holds, and the values to draw."""

    header: dict[str, str]
    texts: dict[str, str]  # form -> text


DATE_FORMS: dict[str, Callable[[dt.date], str]] = {
    "MM/DD/YYYY": lambda d: f"{d:%m/%d/%Y}",
    "DD-MON-YYYY": lambda d: f"{d.day:02d}-{d:%b-%Y}".upper(),
    "DD.MM.YYYY": lambda d: f"{d:%d.%m.%Y}",
    "YYYY-MM-DD": lambda d: f"{d:%Y-%m-%d}",
    "Mon DD, YYYY": lambda d: f"{d:%b %d, %Y}",
}


def date_items(count: int, rng: np.random.Generator) -> list[Item]:
    """``count`` random dates (1930-2023), each in every form of :data:`DATE_FORMS`."""
    items = []
    for _ in range(count):
        date = dt.date(1930, 1, 1) + dt.timedelta(days=int(rng.integers(0, 34000)))
        texts = {form: render(date) for form, render in DATE_FORMS.items()}
        items.append(Item({"StudyDate": f"{date:%Y%m%d}"}, texts))
    return items


def name_items(count: int, rng: np.random.Generator) -> list[Item]:
    """``count`` made-up patients (Faker, seeded from ``rng``): three name forms and an MRN."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(int(rng.integers(0, 2**31)))
    items = []
    for _ in range(count):
        family, given = fake.last_name().upper(), fake.first_name().upper()
        mrn = str(int(rng.integers(10**7, 10**10)))
        texts = {
            "FAMILY^GIVEN": f"{family}^{given}",
            "FAMILY, GIVEN": f"{family}, {given}",
            "Given Family": f"{given.title()} {family.title()}",
            "MRN digits": mrn,
        }
        items.append(Item({"PatientName": f"{family}^{given}", "PatientID": mrn}, texts))
    return items


KINDS: dict[str, Callable[[int, np.random.Generator], list[Item]]] = {
    "dates": date_items,
    "names": name_items,
}
#: What the header holds when the values are not the record's.
OTHER_RECORD = {"PatientName": "PROBE^NOBODY", "PatientID": "PROBE0001"}


def faces(folders: tuple[str, ...]) -> list[Path]:
    """Every DejaVu text face installed (the math face is not text)."""
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("DejaVu*.ttf")):
            if "Math" not in path.name:
                found.setdefault(path.name, path)
    return [found[name] for name in sorted(found)]


def strip_image(
    texts: list[str], font: ImageFont.FreeTypeFont, background: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``texts`` drawn left to right on ``background``; the pixels and each text's glyphs."""
    ink = Image.new("L", (COLUMNS, ROWS), 0)
    draw = ImageDraw.Draw(ink)
    glyphs: list[np.ndarray] = []
    x = 10
    for text in texts:
        before = np.asarray(ink) > 60
        draw.text((x, 20), text, fill=230, font=font)
        glyphs.append((np.asarray(ink) > 60) & ~before)
        x += int(font.getlength(text)) + 5 * int(font.size)
    drawn = np.asarray(ink)
    return np.where(drawn > 0, drawn, background).astype(np.uint8), glyphs


def dicom_bytes(pixels: np.ndarray, header: dict[str, str]) -> bytes:
    """An 8-bit MONOCHROME2 secondary capture of ``pixels`` with ``header``'s attributes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    for keyword, value in {**OTHER_RECORD, **header}.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


RECORDS = ("in the header", "not in the header")


def run(
    kind: str,
    backend: str,
    sizes: list[int],
    count: int,
    seed: int,
    only: set[str] | None,
    pixels_policy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Draw, de-identify and score every (face, size, item, form); see the module doc.

    ``pixels_policy`` is merged into the policy's ``pixels`` section (tests turn masking
    off to see every value counted as leaked).
    """
    from dicomscrub.core.pipeline import Engine
    from dicomscrub.core.sample_images import FONT_DIRS

    policy = {"pixels": {"ocr_backend": backend, **(pixels_policy or {})}}
    engine = Engine(policy, secret=os.environ["DICOMSCRUB_SECRET"])
    rng = np.random.default_rng(seed)
    items = KINDS[kind](count, rng)
    noise = ndimage.gaussian_filter(rng.standard_normal((ROWS, COLUMNS)), 6)
    background = (20 + 60 * (noise - noise.min()) / np.ptp(noise)).astype(np.uint8)
    paths = [p for p in faces(FONT_DIRS) if only is None or p.name in only]
    if not paths:
        raise SystemExit("no DejaVu face found: install fonts-dejavu-core and fonts-dejavu-extra")
    total: Counter[tuple[str, str, str, int]] = Counter()
    leaked: Counter[tuple[str, str, str, int]] = Counter()
    examples: list[dict[str, Any]] = []
    for path in paths:
        for size in sizes:
            font = ImageFont.truetype(str(path), size)
            for item in items:
                pixels, glyphs = strip_image(list(item.texts.values()), font, background)
                for record in RECORDS:
                    header = item.header if record == RECORDS[0] else {}
                    out, result = engine.process_bytes(dicom_bytes(pixels, header))
                    if out is None:
                        raise SystemExit(f"{path.name} {size}px: {result.error_code}")
                    after = pydicom.dcmread(BytesIO(out)).pixel_array
                    for (form, text), ink in zip(item.texts.items(), glyphs, strict=True):
                        key = (record, form, path.name, size)
                        total[key] += 1
                        if np.all(after[ink] != pixels[ink]):
                            continue
                        leaked[key] += 1
                        masked = [e.entity_type for e in result.entities if e.location == "pixel"]
                        examples.append(
                            {
                                "face": path.name,
                                "size": size,
                                "record": record,
                                "text": text,
                                "masked": masked,
                            }
                        )
    return {
        "kind": kind,
        "backend": backend,
        "sizes": sizes,
        "count": count,
        "seed": seed,
        "faces": [p.name for p in paths],
        "total": total,
        "leaked": leaked,
        "examples": examples,
    }


def _rows(summary: dict[str, Any], index: int) -> list[tuple[str, str]]:
    """(name, 'leaked/total' per record column) grouped by key field ``index``."""
    names = sorted({key[index] for key in summary["total"]}, key=str)
    rows = []
    for name in names:
        cells = []
        for record in RECORDS:
            keys = [k for k in summary["total"] if k[index] == name and k[0] == record]
            leaked = sum(summary["leaked"][k] for k in keys)
            cells.append(f"{leaked}/{sum(summary['total'][k] for k in keys)}")
        rows.append((str(name), " | ".join(cells)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="dates", choices=sorted(KINDS))
    parser.add_argument("--backend", default="tesserocr", choices=("tesserocr", "pytesseract"))
    parser.add_argument("--sizes", default="10,12,14")
    parser.add_argument("--count", type=int, default=4, help="dates or patients drawn")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faces", default=None, help="comma-separated file names (default: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if "DICOMSCRUB_SECRET" not in os.environ:
        print("set DICOMSCRUB_SECRET (any value: the probe's numbers do not depend on it)")
        return 2
    only = set(args.faces.split(",")) if args.faces else None
    sizes = [int(s) for s in args.sizes.split(",")]
    summary = run(args.kind, args.backend, sizes, args.count, args.seed, only)
    if args.json:
        flat = {
            **summary,
            "total": {" | ".join(map(str, k)): v for k, v in summary["total"].items()},
            "leaked": {" | ".join(map(str, k)): v for k, v in summary["leaked"].items()},
        }
        print(json.dumps(flat, indent=2))
        return 0
    drawn = sum(summary["total"].values())
    forms = len({key[1] for key in summary["total"]})
    print(
        f"Text probe, {args.kind}: {len(summary['faces'])} faces x sizes {args.sizes} px x "
        f"{args.count} x {forms} forms x 2 headers, OCR {args.backend}, seed {args.seed}: "
        f"{drawn} values drawn; leaked (any glyph pixel unchanged) / drawn\n"
    )
    for title, index in (("form", 1), ("size (px)", 3), ("face", 2)):
        print(f"| {title} | values in the header | not in the header |")
        print("|---|---|---|")
        for name, cells in _rows(summary, index):
            print(f"| {name} | {cells} |")
        print()
    for example in summary["examples"]:
        masked = ", ".join(example["masked"]) or "nothing"
        print(
            f"leaked: {example['face']} {example['size']}px, {example['record']}: "
            f"{example['text']!r} (masked on its image: {masked})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
