"""kademlia 2.2.3's own test suite (shipped in its wheel as kademlia.tests),
run once as it is and once with ``kademlia.network.Server`` replaced by
``DhtNode`` and nothing else: the drop-in promise, checked by upstream's
tests. Each run is a pytest of its own in a subprocess (the swap patches a
module for the whole process), on a copy of the suite in a temporary
directory. The suite listens on the fixed ports 8468 and 8469."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_EFFECT = """
def test_the_swap_is_in_effect():
    from kademlia.network import Server

    from dhtquery import DhtNode

    assert Server is DhtNode
"""


def _suite(tmp_path: Path) -> Path:
    spec = importlib.util.find_spec("kademlia.tests")
    if spec is None or spec.origin is None:
        pytest.skip("the installed kademlia has no kademlia.tests (its sdist or wheel lacks them)")
    suite = tmp_path / "kademlia_tests"
    shutil.copytree(Path(spec.origin).parent, suite, ignore=shutil.ignore_patterns("__pycache__"))
    return suite


def _run(suite: Path, *plugins: str) -> tuple[int, str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    for plugin in ("tests.kademlia_suite.compat", *plugins):
        command += ["-p", plugin]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [*command, str(suite)],
        cwd=suite.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def _passed(output: str) -> int:
    found = re.search(r"(\d+) passed", output)
    return int(found.group(1)) if found else 0


def test_kademlias_own_suite_passes_as_it_is(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    status, output = _run(suite)
    assert status == 0, output
    assert _passed(output) >= 18 and " failed" not in output and "skipped" not in output


def test_kademlias_own_suite_passes_with_dhtnode_as_its_server(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    (suite / "test_swap_in_effect.py").write_text(IN_EFFECT)
    status, output = _run(suite, "tests.kademlia_suite.swap")
    assert status == 0, output
    # upstream's 18, and the check that the swap took
    assert _passed(output) >= 19 and " failed" not in output and "skipped" not in output
