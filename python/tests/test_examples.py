"""The Python example the README's `quickstart.sh --python` runs: it must keep working and finding its needle."""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_generate_example_finds_the_needle(smollm2):  # the fixture: SmolLM2 is installed
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "python" / "generate.py"), "--sentences", "80",
                          "--max-new-tokens", "12", "--budget", "128"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    print(run.stdout)
    assert "-> found" in run.stdout
    assert "tokens attended per KV head" in run.stdout
