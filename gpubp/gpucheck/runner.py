"""gpucheck's phases as child processes, each under its own timeout within one overall budget.

Each phase runs in a fresh Python process (``python -m gpubp.gpucheck --phase NAME``): a
hard timeout can stop it (its whole process group is killed, pytest's own children and
``mpiexec`` included), a CUDA error that poisons one process's context cannot spoil the next
phase, and each phase starts from the compiled kernels the first one left in the disk cache.
A phase writes ``phase-NAME.json`` (``passed``, a one-line ``summary``, ``details``) into
the output folder and its output into ``phase-NAME.log``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

# Seconds a phase's process gets after its own deadline to write its result.
GRACE_S = 3.0


@dataclass(frozen=True)
class Phase:
    """One phase: its name, its own timeout in seconds, and what it does (for the report)."""

    name: str
    budget_s: float
    what: str


@dataclass
class PhaseResult:
    name: str
    status: str  # PASS, FAIL, TIMEOUT or ERROR
    seconds: float
    budget_s: float
    summary: str
    details: Dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def phase_command(phase: Phase, out_dir: Path, deadline: float) -> List[str]:
    """The child process that runs ``phase``: this same module, told its deadline."""
    return [sys.executable, "-m", "gpubp.gpucheck", "--phase", phase.name, "--output", str(out_dir),
            "--deadline", f"{deadline:.3f}"]


def child_env(root: Optional[Path]) -> Dict[str, str]:
    """The environment of a phase: this one, with the checkout on ``PYTHONPATH`` (so a plain
    checkout runs with no install)."""
    env = dict(os.environ)
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def run_subprocess(cmd: Sequence[str], timeout: float, log: Path, cwd: Optional[Path] = None,
                   env: Optional[Dict[str, str]] = None) -> Optional[int]:
    """Run ``cmd`` with its output appended to ``log``; its return code, or ``None`` when it ran
    past ``timeout`` seconds and was killed with everything it started."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=max(0.1, timeout))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            return None


def run_phases(phases: Sequence[Phase], out_dir: Path, total_budget_s: float,
               command: Callable[[Phase, Path, float], List[str]] = phase_command, root: Optional[Path] = None,
               log: Callable[[str], None] = print) -> List[PhaseResult]:
    """Run every phase in order; each gets ``min(its budget, what is left of the total)``."""
    start = time.monotonic()
    results: List[PhaseResult] = []
    for i, phase in enumerate(phases, start=1):
        left = total_budget_s - (time.monotonic() - start)
        timeout = min(phase.budget_s, left)
        if timeout < 1.0:
            results.append(PhaseResult(phase.name, "TIMEOUT", 0.0, phase.budget_s,
                                       f"not started: the {total_budget_s:.0f} s budget was spent"))
            log(f"gpucheck [{i}/{len(phases)}] {phase.name}: not started, no time left")
            continue
        log(f"gpucheck [{i}/{len(phases)}] {phase.name}: {phase.what} (at most {timeout:.0f} s) ...")
        result_file = out_dir / f"phase-{phase.name}.json"
        logfile = out_dir / f"phase-{phase.name}.log"
        for stale in (result_file, logfile):
            if stale.exists():
                stale.unlink()
        t0 = time.monotonic()
        # the phase's own deadline leaves it GRACE_S to write its result before the hard timeout
        deadline = time.time() + max(0.5, timeout - GRACE_S)
        code = run_subprocess(command(phase, out_dir, deadline), timeout, logfile, cwd=root, env=child_env(root))
        seconds = time.monotonic() - t0
        results.append(_result(phase, code, seconds, timeout, result_file, logfile))
        r = results[-1]
        log(f"gpucheck [{i}/{len(phases)}] {phase.name}: {r.status} in {seconds:.1f} s: {r.summary}")
    return results


def _result(phase: Phase, code: Optional[int], seconds: float, timeout: float, result_file: Path,
            logfile: Path) -> PhaseResult:
    data: Dict[str, Any] = {}
    if result_file.exists():
        try:
            data = json.loads(result_file.read_text())
        except ValueError:
            data = {}
    if code is None:
        summary = f"timed out after {timeout:.0f} s and was stopped"
        if data.get("summary"):
            summary += f" ({data['summary']})"
        return PhaseResult(phase.name, "TIMEOUT", seconds, phase.budget_s, summary, data.get("details", {}))
    if not data:
        tail = _tail(logfile)
        return PhaseResult(phase.name, "ERROR", seconds, phase.budget_s,
                           f"exit status {code}, no result written; last output: {tail}")
    status = "PASS" if data.get("passed") and code == 0 else "FAIL"
    return PhaseResult(phase.name, status, seconds, phase.budget_s, str(data.get("summary", "")),
                       data.get("details", {}))


def _tail(logfile: Path, chars: int = 300) -> str:
    try:
        text = logfile.read_text(errors="replace").strip()
    except OSError:
        return "(no output)"
    return " ".join(text[-chars:].split()) or "(no output)"


def write_phase_result(out_dir: Path, name: str, passed: bool, summary: str, details: Dict[str, Any]) -> None:
    """What a phase's process leaves for the driver."""
    path = out_dir / f"phase-{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"passed": bool(passed), "summary": summary, "details": details}, indent=1,
                              default=str) + "\n")
    tmp.replace(path)
