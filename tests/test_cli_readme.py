"""README's Python examples run as written and print what README says they
print (numbers, ports and the core's name aside), so they stay runnable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import ENV

README = Path(__file__).resolve().parents[1] / "README.md"
#: A python block, and the plain block README shows as its output, if any.
EXAMPLE = re.compile(
    r"```python\n(?P<code>.*?)```\n(?:\n[^`\n][^\n]*\n+```\n(?P<output>.*?)```)?", re.S
)
TIMEOUT = 60.0


def _examples() -> list[tuple[str, str | None]]:
    text = README.read_text(encoding="utf-8")
    return [(m["code"], m["output"]) for m in EXAMPLE.finditer(text)]


def _shape(line: str) -> str:
    """A printed line as a pattern: any number, any core."""
    pattern = re.escape(line.strip())
    pattern = re.sub(r"\d+(?:\\\.\d+)?", r"\\d+(?:\\.\\d+)?", pattern)
    return pattern.replace("rust", "(?:rust|python)")


def test_readme_has_python_examples() -> None:
    assert len(_examples()) >= 2


@pytest.mark.parametrize("index", range(len(_examples())))
def test_readme_example_runs_and_prints_what_readme_shows(index: int, tmp_path: Path) -> None:
    code, shown = _examples()[index]
    script = tmp_path / f"example_{index}.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=ENV,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), "the example printed nothing"
    if shown is not None:
        printed = result.stdout.strip().splitlines()
        expected = shown.strip().splitlines()
        assert len(printed) == len(expected), (printed, expected)
        for got, want in zip(printed, expected, strict=True):
            assert re.fullmatch(_shape(want), got.strip()), (got, want)
