"""``make quality``: dicomscrub's quality numbers on the default synthetic corpus.

Regenerates the default corpus (``dicomscrub samples generate``, seed 0, 3
patients x 1 study = 14 files: CT, MR, DX, CR, US, US cine, secondary captures,
SR), de-identifies it with the default policy (``Engine`` with a fixed
benchmark secret; the numbers do not depend on it), scores the output with
``dicomscrub eval`` and prints the numbers as a Markdown table for the README.

Options: ``--seed N``, ``--patients N``, ``--out DIR`` (default
``bench-out/quality``), ``--policy NAME_OR_YAML``, ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--out", default="bench-out/quality")
    parser.add_argument("--policy", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    from dicomscrub.core.evaluate import evaluate
    from dicomscrub.core.pipeline import Engine
    from dicomscrub.core.samples import generate_corpus

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    corpus, redacted = out / "corpus", out / "redacted"
    summary = generate_corpus(corpus, seed=args.seed, patients=args.patients)
    print(summary, file=sys.stderr)
    engine = Engine(args.policy, secret="quality-benchmark-secret")
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
    report = evaluate(corpus, redacted)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    files = len(key["files"])
    print(
        f"dicomscrub {engine.policy.name} policy on the synthetic corpus "
        f"(`dicomscrub samples generate --seed {args.seed} --patients {args.patients}`: "
        f"{files} files), scored by `dicomscrub eval`; {seconds:.0f} s on this machine.\n"
    )
    print("| metric | result |\n|---|---|")
    for name, label in README_METRICS:
        m = report.metrics[name]
        rate = "n/a" if m.rate is None else f"{100 * m.rate:.1f}%"
        print(f"| {label} | {rate} ({m.passed}/{m.total}) |")
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


if __name__ == "__main__":
    sys.exit(main())
