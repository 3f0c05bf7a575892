"""panet.base.process_memory: the peak a benchmark subprocess reports is its own (Linux /proc)."""

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")

MIB = 2 ** 20
REPORT = ("import json; from panet.base.process_memory import peak_resident_bytes, resident_bytes; "
          "print(json.dumps([resident_bytes(), peak_resident_bytes()]))")


def run_python(code: str) -> list:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_peak_rises_by_what_was_touched_and_stays_after_it_is_freed():
    before, after_free, peak = run_python(textwrap.dedent("""
        import json, numpy as np
        from panet.base.process_memory import peak_resident_bytes, resident_bytes
        before = resident_bytes()
        block = np.ones(300 * 2 ** 20, dtype=np.uint8)  # 300 MiB, every page touched
        del block
        print(json.dumps([before, resident_bytes(), peak_resident_bytes()]))
    """))
    assert peak - before >= 290 * MIB
    assert after_free < peak - 200 * MIB  # freed: resident falls, the high-water mark does not


def test_a_child_started_by_a_large_parent_reports_its_own_peak():
    """The parent touches 500 MiB, then starts a small child: the child's peak is its own."""
    child_resident, child_peak = run_python(textwrap.dedent(f"""
        import subprocess, sys, numpy as np
        block = np.ones(500 * 2 ** 20, dtype=np.uint8)
        print(subprocess.run([sys.executable, "-c", {REPORT!r}], check=True,
                             capture_output=True, text=True).stdout)
    """))
    assert child_peak < 250 * MIB, child_peak / MIB
    assert child_resident <= child_peak
