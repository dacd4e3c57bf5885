"""One benchmark job in its own child process: ``python -m ftedge.runtime.bench_worker JOB_JSON
OUT_JSON`` (never the ``ftedge`` CLI).

Jobs run one after the other, each in a fresh process. Backends therefore cannot slow each
other down: onnxruntime's threads spinning between runs once made torch eager 11x slower in the
same process, OpenVINO and torch keep their own thread pools alive, and each process's peak RSS
is that backend's alone. onnxruntime's threads spin only within a run by default (what
``ftedge.runtime.load`` ships); ``--ort-spin`` keeps them spinning between runs. A backend that
crashes or hangs (``job_timeout_s``) costs only its own rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftedge.runtime.bench_measure import run_job
from ftedge.runtime.bench_spec import BenchmarkOptions, Job

WORKER_MODULE = "ftedge.runtime.bench_worker"


def run_job_isolated(job: Job, options: BenchmarkOptions) -> dict[str, Any]:
    """Run one job in a fresh ``python -m ftedge.runtime.bench_worker`` child process; the same
    answer as ``run_job``, or ``{"error"}`` when the child timed out or died."""
    with tempfile.TemporaryDirectory(prefix="ftedge-bench-") as tmp:
        spec, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"job": job.to_dict(), "options": options.to_dict()}))
        cmd = [sys.executable, "-m", WORKER_MODULE, str(spec), str(out)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=options.job_timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {options.job_timeout_s:.0f} s"}
        if out.is_file():
            result: dict[str, Any] = json.loads(out.read_text())
            return result
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()
        return {"error": f"worker exited with code {proc.returncode}: {tail[-1] if tail else ''}"}


def main(argv: Sequence[str] | None = None) -> int:
    """The child's entry point: read the job, measure it, write the answer."""
    p = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    p.add_argument("job_json", metavar="JOB_JSON")
    p.add_argument("out_json", metavar="OUT_JSON")
    args = p.parse_args(argv)
    spec = json.loads(Path(args.job_json).read_text())
    out = run_job(Job.from_dict(spec["job"]), BenchmarkOptions.from_dict(spec["options"]))
    Path(args.out_json).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
