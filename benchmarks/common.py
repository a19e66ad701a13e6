"""What every benchmark shares: the header of its result (which script, when, the command that reruns it, the
machine, the load), where its JSON goes, and the crash-safe writers and plots (:mod:`recbole_tasrec.harness.files`).

A result is built as ``{**result_header(...), ...figures}`` at the start of a run and written with
:func:`write_result`, which adds the load at the end: timings on a shared machine mean little without both.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import resource
import sys
from pathlib import Path
from typing import Any

from recbole_tasrec.harness.files import pyplot, save_figure, write_json, write_text
from recbole_tasrec.harness.provenance import source_commit

__all__ = [
    "RESULTS",
    "ROOT",
    "load_average",
    "machine_record",
    "peak_rss_mib",
    "pyplot",
    "ratio",
    "result_header",
    "result_path",
    "save_figure",
    "write_json",
    "write_result",
    "write_text",
]

ROOT = Path(__file__).resolve().parents[1]
#: the committed results the READMEs quote
RESULTS = ROOT / "benchmarks" / "results"
#: where a run below a benchmark's required scale goes (git-ignored), so it never replaces a recorded result
SMALL_RESULTS = ROOT / "runs" / "bench_results"


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages, rounded: how busy the shared machine was."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    """``ru_maxrss`` of this process in MiB (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def machine_record(threads: int | None) -> dict[str, Any]:
    """The machine and software a result was measured on: CPU model and counts, GPUs, versions, torch threads,
    and the package's git commit (``-dirty`` when tracked files were modified)."""
    import numpy
    import recbole
    import scipy
    import torch

    cpu = platform.processor() or None
    if Path("/proc/cpuinfo").exists():
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    cuda = torch.cuda.is_available()
    gpus = [torch.cuda.get_device_name(k) for k in range(torch.cuda.device_count())] if cuda else []
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "gpus": gpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch_threads": threads,
        "git_commit": source_commit(),
    }


def result_header(benchmark: str, argv: list[str] | None, threads: int | None) -> dict[str, Any]:
    """The first keys of every benchmark result: the script, the time (UTC), the command that reruns it, the
    machine (:func:`machine_record`) and the load at the start."""
    args = sys.argv[1:] if argv is None else argv
    return {
        "benchmark": benchmark,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": f"uv run python -m benchmarks.{benchmark} {' '.join(args)}".strip(),
        "machine": machine_record(threads),
        "loadavg_start": load_average(),
    }


def result_path(kind: str, output: str | os.PathLike[str] | None, full_scale: bool, suffix: str = ".json") -> Path:
    """``output`` if given; else ``benchmarks/results/<kind>_<date><suffix>`` for a run at the benchmark's required
    scale, or ``runs/bench_results/<kind>_<date>_small<suffix>`` for a smaller one."""
    if output:
        return Path(output)
    today = dt.date.today().isoformat()
    return RESULTS / f"{kind}_{today}{suffix}" if full_scale else SMALL_RESULTS / f"{kind}_{today}_small{suffix}"


def write_result(result: dict[str, Any], path: Path) -> Path:
    """Add the load at the end (``loadavg_end``) and write ``result`` as JSON, crash-safe; returns ``path``."""
    result["loadavg_end"] = load_average()
    return write_json(path, result)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` to 3 places, or ``None`` when either is missing or zero."""
    return round(a / b, 3) if a and b else None
