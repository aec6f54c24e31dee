"""``make quality``: dicomscrub's quality numbers on the default synthetic corpus.

Regenerates the default corpus (``dicomscrub samples generate``, seed 0, 3
patients x 1 study = 14 files: CT, MR, DX, CR, US, US cine, secondary captures,
SR), de-identifies it with the default policy (``Engine`` with a fixed
benchmark secret; the numbers do not depend on it), scores the output with
``dicomscrub eval`` and prints the numbers as a Markdown table for the README.

Options: ``--seed N``, ``--patients N``, ``--out DIR`` (default
``bench-out/quality``), ``--policy NAME_OR_YAML``, ``--json``.

``--seeds A-B`` (or ``A,B,C``) sweeps many corpora instead, one engine for all
of them: the table then sums every metric over the seeds, and every leak and
problem is listed with its seed. One seed's corpus places text one way; a sweep
finds what only some layouts, names and OCR readings bring out.

``--faces held-out-1`` (or ``held-out-2``) draws the burned-in text in DejaVu
faces the corpus never uses (condensed and oblique, or bold and oblique, see
:data:`HELD_OUT_FACES`): the same layouts, in type the engine was not tuned on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

README_METRICS = (
    ("header_phi_recall", "Header PHI recall (planted values absent from the output)"),
    ("free_text_words_kept", "Free-text words kept (non-PHI words of cleaned descriptors)"),
    ("preserved_attributes", "Must-preserve attributes unchanged"),
    ("uids_changed", "UIDs changed"),
    ("uid_consistency", "UID consistency (same input -> same output)"),
    ("references_intact", "References intact"),
    ("date_intervals", "Date intervals kept per patient"),
    ("burned_in_phi_recall", "Burned-in PHI recall (text items unreadable on every frame)"),
    ("burned_in_labels_kept", "Burned-in non-PHI labels kept"),
    ("pixels_outside_text", "Files with every pixel outside text unchanged"),
    ("valid_dicom", "Valid DICOM outputs"),
)

#: Other faces of the corpus fonts (``sample_images.FONT_FILES``), Debian
#: ``fonts-dejavu-core`` and ``fonts-dejavu-extra`` (``make install`` installs both).
HELD_OUT_FACES = {
    "held-out-1": {
        "dejavu-sans-mono": "DejaVuSansMono-Oblique.ttf",
        "dejavu-sans": "DejaVuSansCondensed.ttf",
        "dejavu-sans-bold": "DejaVuSansCondensed-Bold.ttf",
        "dejavu-serif": "DejaVuSerifCondensed.ttf",
    },
    "held-out-2": {
        "dejavu-sans-mono": "DejaVuSansMono-Bold.ttf",
        "dejavu-sans": "DejaVuSans-Oblique.ttf",
        "dejavu-sans-bold": "DejaVuSans-BoldOblique.ttf",
        "dejavu-serif": "DejaVuSerif-Bold.ttf",
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default=None, help="a sweep: A-B or A,B,C")
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--out", default="bench-out/quality")
    parser.add_argument("--policy", default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--faces", choices=sorted(HELD_OUT_FACES), default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    if args.faces is not None:
        from dicomscrub.core import sample_images

        sample_images.FONT_FILES.update(HELD_OUT_FACES[args.faces])
        sample_images.load_font.cache_clear()

    from dicomscrub.core.pipeline import Engine

    engine = Engine(args.policy, secret="quality-benchmark-secret")
    if args.seeds is not None:
        return _sweep(engine, _seed_list(args.seeds), args.patients, Path(args.out), args.faces)
    report, failed, files, seconds = _run_seed(engine, args.seed, args.patients, Path(args.out))
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    print(
        f"dicomscrub {_described(engine, args.faces)} on the synthetic corpus "
        f"(`dicomscrub samples generate --seed {args.seed} --patients {args.patients}`: "
        f"{files} files), scored by `dicomscrub eval`; {seconds:.0f} s on this machine.\n"
    )
    _table({name: (m.passed, m.total) for name, m in report.metrics.items()})
    o = report.outside_pixels
    print(f"| Pixels outside text unchanged | {100 * (o.rate or 0):.4f}% |")
    print("\nBurned-in PHI recall by file kind: " + ", ".join(
        f"{kind} {100 * d['burned_in_phi_recall'].rate:.0f}%"
        for kind, d in sorted(report.by_kind.items())
        if "burned_in_phi_recall" in d and d["burned_in_phi_recall"].rate is not None
    ))  # fmt: skip
    if failed:
        print("\nFailed files: " + "; ".join(failed))
    if report.problems:
        print("\nProblems: " + "; ".join(f"{p['file']}: {p['problem']}" for p in report.problems))
    return 0


def _run_seed(
    engine: Any, seed: int, patients: int, out: Path
) -> tuple[Any, list[str], int, float]:
    """Generate one corpus, de-identify it, score it: (report, failed files, files, seconds)."""
    from dicomscrub.core.evaluate import evaluate
    from dicomscrub.core.samples import generate_corpus

    shutil.rmtree(out, ignore_errors=True)
    corpus, redacted = out / "corpus", out / "redacted"
    summary = generate_corpus(corpus, seed=seed, patients=patients)
    print(summary, file=sys.stderr)
    key = json.loads((corpus / "answer_key.json").read_text())
    started = time.perf_counter()
    failed = []
    for f in key["files"]:
        target = redacted / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        result = engine.process_file(str(corpus / "dicom" / f["path"]), str(target))
        if result.status != "ok":
            failed.append(f"{f['path']}: {result.error_code}")
    seconds = time.perf_counter() - started
    return evaluate(corpus, redacted), failed, len(key["files"]), seconds


def _seed_list(text: str) -> list[int]:
    """``"0-3"`` -> [0, 1, 2, 3]; ``"1,5,9"`` -> [1, 5, 9]."""
    if "-" in text:
        first, last = (int(v) for v in text.split("-", 1))
        return list(range(first, last + 1))
    return [int(v) for v in text.split(",")]


def _sweep(engine: Any, seeds: list[int], patients: int, out: Path, faces: str | None) -> int:
    """Run every seed; print the summed metrics, then each seed's leaks and problems."""
    totals: dict[str, list[int]] = {}
    notes: list[str] = []
    files = 0
    started = time.perf_counter()
    for seed in seeds:
        report, failed, count, _ = _run_seed(engine, seed, patients, out / f"seed-{seed}")
        files += count
        for name, m in report.metrics.items():
            total = totals.setdefault(name, [0, 0])
            total[0] += m.passed
            total[1] += m.total
        notes += [f"seed {seed}: failed {f}" for f in failed]
        notes += [
            f"seed {seed}: leak {leak['file']} {leak['where']} {leak['type']} at {leak['path']}"
            for leak in report.leaks
        ]
        notes += [f"seed {seed}: {p['file']}: {p['problem']}" for p in report.problems]
        shutil.rmtree(out / f"seed-{seed}", ignore_errors=True)
    seconds = time.perf_counter() - started
    print(
        f"dicomscrub {_described(engine, faces)} on {len(seeds)} synthetic corpora "
        f"(`dicomscrub samples generate --seed S --patients {patients}` for S in "
        f"{seeds[0]}..{seeds[-1]}: {files} files), scored by `dicomscrub eval`; "
        f"{seconds:.0f} s on this machine.\n"
    )
    _table({name: (t[0], t[1]) for name, t in totals.items()})
    print("\n" + ("\n".join(notes) if notes else "No leaks, failures or problems."))
    return 0


def _described(engine: Any, faces: str | None = None) -> str:
    """``default policy, pixels phi, OCR tesserocr``: the policy and what reads the pixels
    (and ``, text in held-out-1 faces`` with ``--faces``)."""
    from dicomscrub.core.ocr import get_backend

    pixels = engine.policy.pixels
    if pixels.mode == "off":
        return f"{engine.policy.name} policy, pixels off"
    backend = get_backend(pixels.ocr_backend).name
    drawn = f", text in {faces} faces" if faces else ""
    return f"{engine.policy.name} policy, pixels {pixels.mode}, OCR {backend}{drawn}"


def _table(counts: dict[str, tuple[int, int]]) -> None:
    print("| metric | result |\n|---|---|")
    for name, label in README_METRICS:
        passed, total = counts.get(name, (0, 0))
        rate = f"{100 * passed / total:.1f}%" if total else "n/a"
        print(f"| {label} | {rate} ({passed}/{total}) |")


if __name__ == "__main__":
    sys.exit(main())
