"""Batch-runner benchmark: files/s per worker count and peak memory per partition size.

``python benchmarks/batch.py TEMPLATE_DIR WORK_DIR FILES WORKERS`` makes a
partition of ``FILES`` instances (copies of the template files with fresh UIDs,
ten instances per study), runs :func:`dicomscrub.core.runner.run_partition` on
it with the default policy in a child process, samples the resident memory of
that process and its workers every 50 ms, and prints one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

SECRET = "benchmark-secret-not-for-real-data"


def make_partition(templates: list[Path], root: Path, files: int) -> Path:
    """Write ``files`` copies of the templates with fresh UIDs; return the manifest (CSV)."""
    root.mkdir(parents=True, exist_ok=True)
    datasets = [pydicom.dcmread(t) for t in templates]
    rows = []
    for i in range(files):
        ds = datasets[i % len(datasets)]
        study = i // 10
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["bench-study", str(study)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["bench-series", str(study)])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["bench-sop", str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = root / f"{i:05d}.dcm"
        ds.save_as(path)
        rows.append(f"{path},bench")
    manifest = root / "manifest.csv"
    manifest.write_text("path,partition\n" + "\n".join(rows) + "\n")
    return manifest


def _child(manifest: str, out: str, audit: str, workers: int) -> None:
    from dicomscrub.core.runner import run_partition

    result = run_partition(manifest, "bench", out, audit, None, SECRET, workers)
    print(json.dumps({"counts": dict(result.counts), "seconds": result.seconds}))


def run(manifest: Path, work: Path, workers: int) -> dict[str, Any]:
    """Run one partition in a child process; return wall time, counts and peak RSS."""
    import psutil

    out, audit = work / f"out-w{workers}", work / f"audit-w{workers}"
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import batch; "
        f"batch._child({str(manifest)!r}, {str(out)!r}, {str(audit)!r}, {workers})"
    )
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    parent = psutil.Process(proc.pid)
    peak_tree = peak_parent = 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            rss = [p.memory_info().rss for p in tree]
            peak_tree = max(peak_tree, sum(rss))
            peak_parent = max(peak_parent, rss[0])
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - started
    stdout = proc.stdout.read() if proc.stdout else ""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1]) if lines else {"counts": {}, "seconds": None}
    return {
        "workers": workers,
        "wall_s": wall,
        "run_s": result["seconds"],
        "counts": result["counts"],
        "peak_tree_rss_mb": peak_tree / 2**20,
        "peak_parent_rss_mb": peak_parent / 2**20,
        "returncode": proc.returncode,
    }


def main(argv: list[str]) -> int:
    template_dir, work_dir, files, workers = argv
    templates = sorted(Path(template_dir).rglob("*.dcm"))
    work = Path(work_dir)
    manifest = make_partition(templates, work / "in", int(files))
    report = run(manifest, work, int(workers))
    report["files"] = int(files)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
