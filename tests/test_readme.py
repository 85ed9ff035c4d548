"""The README's Python examples run as written (they are the first thing a user tries)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    ns: dict = {}
    for code in blocks:  # later blocks may use names of earlier ones
        exec(compile(code, str(README), "exec"), ns)
    assert ns["r"].status == "optimal" and ns["r"].solver == "altheory-fast"
    assert ns["ref"].status == "optimal"
    assert abs(ns["r"].objective - ns["ref"].objective) <= 1e-6 * ns["ref"].objective
