"""Every benchmark command at least starts: `python -m bench.X --help` exits 0 (a bench
importing a name another module no longer has failed only when someone ran it)."""
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["bench", "bench.chaos", "bench.soak", "bench.prune",
                                    "testing.observed_sandbox"])
def test_the_command_starts(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
