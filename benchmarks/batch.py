"""Batch-runner benchmark: files/s per worker count and policy, start-up, co-run contention.

``python benchmarks/batch.py TEMPLATE_DIR WORK_DIR FILES WORKERS [POLICY]`` makes a
partition of ``FILES`` instances (copies of the template files with fresh UIDs,
ten instances per study) and a complete manifest (header columns filled, as
``dicomscrub manifest build`` writes it; the time that took is reported as
``scan_s``), runs :func:`dicomscrub.core.runner.run_partition` on it in a child
process with ``POLICY`` (``default``, or ``header``: ``pixels: {mode: off}``),
samples the resident memory of that process and its workers every 50 ms, and
prints one JSON line (wall time, the run's own seconds, the pool's start-up
seconds, peak RSS, CPU seconds of the parent and of all its processes).

``python benchmarks/batch.py --startup`` prints what a process pays before its
first file (imports, engine, spaCy model), measured in a fresh interpreter.

Children run with byte-code caches on (:func:`child_env`), as an installed
package does, even when ``PYTHONDONTWRITEBYTECODE`` is set.

:func:`corun` runs two independent single-worker partitions at the same time:
how much two busy processes slow each other down on this machine, i.e. how
much of a 2x speed-up the hardware allows at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

SECRET = "benchmark-secret-not-for-real-data"
POLICIES: dict[str, Any] = {"default": None, "header": {"pixels": {"mode": "off"}}}
#: Byte-code cache of the child processes (outside the virtual environment).
PYCACHE = Path(tempfile.gettempdir()) / "dicomscrub-bench-pycache"


def child_env() -> dict[str, str]:
    """The children's environment: byte-code caches on, in :data:`PYCACHE`.

    With ``PYTHONDONTWRITEBYTECODE=1`` (set in some sandboxes) every process
    compiles pandas, spaCy and the engine from source again, which multiplies
    start-up time; an installed package has its caches. Run a warm-up first.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
    return env


def make_partition(templates: list[Path], root: Path, files: int) -> tuple[Path, float]:
    """Write ``files`` copies of the templates with fresh UIDs and a complete manifest.

    Returns the manifest (Parquet) and the seconds it took to read the headers
    for it (what a run pays when given a manifest with only ``path``).
    """
    from dicomscrub.core.manifest import read_manifest, write_manifest

    root.mkdir(parents=True, exist_ok=True)
    datasets = [pydicom.dcmread(t) for t in templates]
    paths = []
    for i in range(files):
        ds = datasets[i % len(datasets)]
        study = i // 10
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["bench-study", str(study)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["bench-series", str(study)])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["bench-sop", str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = root / f"{i:05d}.dcm"
        ds.save_as(path)
        paths.append(str(path))
    import pandas as pd

    started = time.perf_counter()
    manifest = read_manifest(pd.DataFrame({"path": paths, "partition": "bench"}), secret=SECRET)
    scan = time.perf_counter() - started
    target = root / "manifest.parquet"
    write_manifest(manifest, str(target))
    return target, scan


def _child(manifest: str, out: str, audit: str, workers: int, policy: str) -> None:
    from dicomscrub.core.runner import run_partition

    result = run_partition(manifest, "bench", out, audit, POLICIES[policy], SECRET, workers)
    print(
        json.dumps(
            {
                "counts": dict(result.counts),
                "seconds": result.seconds,
                "pool_start_s": getattr(result, "pool_start_seconds", None),
            }
        )
    )


def _start(
    manifest: Path, out: Path, audit: Path, workers: int, policy: str
) -> subprocess.Popen[str]:
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import batch; "
        f"batch._child({str(manifest)!r}, {str(out)!r}, {str(audit)!r}, {workers}, {policy!r})"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=child_env()
    )


def _report(proc: subprocess.Popen[str]) -> dict[str, Any]:
    stdout = proc.stdout.read() if proc.stdout else ""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = (
        json.loads(lines[-1]) if lines else {"counts": {}, "seconds": None, "pool_start_s": None}
    )
    return result


def run(manifest: Path, work: Path, workers: int, policy: str = "default") -> dict[str, Any]:
    """Run one partition in a child process; return wall time, counts and peak RSS."""
    import psutil

    out, audit = work / f"out-w{workers}-{policy}", work / f"audit-w{workers}-{policy}"
    started = time.perf_counter()
    proc = _start(manifest, out, audit, workers, policy)
    parent = psutil.Process(proc.pid)
    peak_tree = peak_parent = 0
    cpu: dict[int, float] = {}  # last CPU seconds seen per process of the tree
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            rss = [p.memory_info().rss for p in tree]
            peak_tree = max(peak_tree, sum(rss))
            peak_parent = max(peak_parent, rss[0])
            for p in tree:
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
        except psutil.Error:
            pass
        time.sleep(0.05)
    wall = time.perf_counter() - started
    result = _report(proc)
    return {
        "workers": workers,
        "policy": policy,
        "wall_s": wall,
        "run_s": result["seconds"],
        "pool_start_s": result["pool_start_s"],
        "counts": result["counts"],
        "peak_tree_rss_mb": peak_tree / 2**20,
        "peak_parent_rss_mb": peak_parent / 2**20,
        "cpu_s": sum(cpu.values()),
        "parent_cpu_s": cpu.get(proc.pid, 0.0),
        "returncode": proc.returncode,
    }


def corun(manifests: tuple[Path, Path], work: Path, policy: str = "default") -> dict[str, Any]:
    """Two independent single-worker runs started together; wall time of each."""
    started = time.perf_counter()
    procs = [
        _start(m, work / f"out-corun{i}-{policy}", work / f"audit-corun{i}-{policy}", 1, policy)
        for i, m in enumerate(manifests)
    ]
    walls: list[float] = [0.0, 0.0]
    while any(w == 0.0 for w in walls):
        for i, proc in enumerate(procs):
            if walls[i] == 0.0 and proc.poll() is not None:
                walls[i] = time.perf_counter() - started
        time.sleep(0.05)
    reports = [_report(p) for p in procs]
    return {
        "policy": policy,
        "walls_s": walls,
        "counts": [r["counts"] for r in reports],
        "returncodes": [p.returncode for p in procs],
    }


_STARTUP = """
import json, time
t = time.perf_counter(); import pandas, pyarrow.parquet; pandas_s = time.perf_counter() - t
t = time.perf_counter()
import dicomscrub.core.workers, dicomscrub.core.pipeline, dicomscrub.core.pixels
import dicomscrub.core.text_detect, spacy
imports_s = time.perf_counter() - t
from dicomscrub.core.pipeline import Engine
from dicomscrub.core.text_detect import TextDetector, load_ner_model
t = time.perf_counter(); engine = Engine(None, "s"); engine_s = time.perf_counter() - t
text = engine.policy.text
t = time.perf_counter(); load_ner_model(text.ner_model); spacy_s = time.perf_counter() - t
t = time.perf_counter(); TextDetector(text).warm_up(); words_s = time.perf_counter() - t
print(json.dumps({"pandas_pyarrow_import_s": pandas_s, "engine_imports_s": imports_s,
                  "engine_build_s": engine_s, "spacy_model_s": spacy_s, "word_lists_s": words_s}))
"""


def startup() -> dict[str, float]:
    """What a fresh process pays before its first file (seconds per item)."""
    proc = subprocess.run(
        [sys.executable, "-c", _STARTUP], capture_output=True, text=True, env=child_env()
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    costs: dict[str, float] = json.loads(lines[-1]) if lines else {}
    return costs


def main(argv: list[str]) -> int:
    if argv == ["--startup"]:
        print(json.dumps(startup()))
        return 0
    template_dir, work_dir, files, workers, *rest = argv
    policy = rest[0] if rest else "default"
    templates = sorted(Path(template_dir).rglob("*.dcm"))
    work = Path(work_dir)
    manifest, scan = make_partition(templates, work / "in", int(files))
    report = run(manifest, work, int(workers), policy)
    report["files"] = int(files)
    report["scan_s"] = scan
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
