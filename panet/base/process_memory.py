"""This process's resident memory, as the benchmarks measure it (Linux /proc/self/status): its
peak is `VmHWM`, which starts afresh at exec, where `ru_maxrss` carries a large parent's over.
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
