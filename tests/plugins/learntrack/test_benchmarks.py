"""A benchmark names the code it ran: an A/B of two checkouts must not mix them unseen."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROBE = "from learntrack.benchmarks import describe_code; describe_code(print)"


def run_probe(cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'plugins'}{os.pathsep}{REPO}"}
    return subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60, check=True).stdout


def test_one_checkout_is_named_once(tmp_path):
    out = run_probe(tmp_path)
    assert out.startswith("Code: ") and str(REPO) in out and "WARNING" not in out


def test_a_package_from_the_current_directory_is_flagged(tmp_path):
    # `python -c` puts the current directory first on sys.path: its jobs/ shadows the repository's.
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "__init__.py").write_text("")
    out = run_probe(tmp_path)
    assert out.startswith("WARNING: the code under test comes from more than one checkout")
    assert f"jobs {tmp_path.resolve()}" in out and f"learntrack {REPO}" in out
