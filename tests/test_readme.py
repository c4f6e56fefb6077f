"""The README's Python snippets run as written, in order, in one namespace (as a reader pastes them).

They start after `make demo`, so the demo's outputs are made first (at the demo's own size, fewer steps).
A snippet that needs the network or a large download is marked in the README, on the line before it, with
`<!-- readme-test: skip REASON -->`, and is reported as skipped with that reason.
"""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip\s+(?P<reason>.+?)\s*-->\s*$")


def python_snippets() -> list[tuple[int, str, str | None]]:
    """(line number, code, skip reason or None) of every ```python block."""
    lines = README.read_text(encoding="utf-8").splitlines()
    snippets, index = [], 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            start = index + 1
            end = next(i for i in range(start, len(lines)) if lines[i].strip() == "```")
            previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            mark = SKIP_MARK.search(previous)
            snippets.append((start + 1, "\n".join(lines[start:end]), mark["reason"] if mark else None))
            index = end
        index += 1
    return snippets


def test_the_readme_has_python_snippets_and_skip_marks_give_reasons():
    snippets = python_snippets()
    assert len(snippets) >= 4
    text = README.read_text(encoding="utf-8")
    assert text.count("readme-test:") == sum(reason is not None for _, _, reason in snippets)


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    from spic_diffusers.demo import run_demo

    monkeypatch.chdir(tmp_path)
    run_demo("demo_output", num_inference_steps=20, log=lambda _: None)  # what `make demo` leaves behind
    namespace: dict = {"__name__": "__readme__"}
    skipped = []
    for line, code, reason in python_snippets():
        if reason is not None:
            skipped.append(f"README.md:{line} ({reason})")
            continue
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as err:  # name the snippet that failed
            pytest.fail(f"the README snippet at line {line} fails: {type(err).__name__}: {err}")
    assert namespace["image"].size == namespace["reconstruction"].size == namespace["photo"].size
    assert (tmp_path / "upload_preview" / "README.md").is_file()
    if skipped:
        pytest.skip(f"ran the others; skipped by README mark: {', '.join(skipped)}")
