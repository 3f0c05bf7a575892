"""This process's resident memory, as the benchmarks measure it (Linux /proc).

The peak is the kernel's high-water mark of this process's own address space (`VmHWM` of
/proc/self/status), which starts afresh when a process execs. `getrusage`'s `ru_maxrss` does not:
Linux carries it over fork and exec, so a benchmark subprocess started by a large parent reports
the parent's peak.
"""

from __future__ import annotations

from pathlib import Path


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # "VmRSS:   123456 kB"
    raise RuntimeError(f"/proc/self/status has no {field} line (a Linux kernel is needed)")


def resident_bytes() -> int:
    """The resident set size now (VmRSS)."""
    return _status_bytes("VmRSS")


def peak_resident_bytes() -> int:
    """The largest resident set size this process has had since it started or exec'd (VmHWM)."""
    return _status_bytes("VmHWM")
