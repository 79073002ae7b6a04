"""Every Python block of every page runs, values in prose resolve, and every check holds.

The build and these tests use the same executor (``scripts/pageexec.py``: one process per
page session, cached under a hash of the session's code and the ``derivations`` package) and
the same prose expansion (``scripts/pageprose.py``), so a failure here names
``docs/<page>.md:<line>`` exactly as the build would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pageexec
import pageprose
from claimsmd import MARKER_LINES
from conftest import DOCS
from docblocks import blocks, links_in_output

PAGES = sorted(p for p in DOCS.rglob("*.md"))
ALL_BLOCKS = {p.relative_to(DOCS).as_posix(): blocks(p, DOCS) for p in PAGES}
NORUN = [b for page in ALL_BLOCKS.values() for b in page if b.norun is not None]
EXECUTED = [p for p, bs in ALL_BLOCKS.items() if any(b.executable for b in bs)]


def page_runs(page: str) -> list[pageexec.SessionRun]:
    runs = pageexec.run_pages([DOCS / page], DOCS)
    return [run for (p, _), run in runs.items() if p == page]


@pytest.mark.parametrize("page", EXECUTED)
def test_page_blocks_run_and_prose_resolves(page: str) -> None:
    runs = page_runs(page)
    errors = [run.error for run in runs if run.error]
    assert not errors, "\n".join(errors)
    markdown = (DOCS / page).read_text(encoding="utf-8")
    expanded, problems = pageprose.substitute(markdown, runs)
    problems += pageprose.leftover_markers(expanded, allowed=MARKER_LINES)  # as the build checks it
    assert not problems, "\n".join(f"docs/{page}:{e.line}: {e.message}" for e in problems)
    by_line = {b.line: b for b in ALL_BLOCKS[page]}
    linked = [f"docs/{page}:{r.line}: {links}" for run in runs for r in run.blocks
              if (links := links_in_output(by_line[r.line], r.output))]
    assert not linked, "links in printed Markdown break (write them in the page's prose):\n" + "\n".join(linked)


SENTENCE = re.compile(r"[A-Za-z]{2,}[^|]*\s[a-z]{2,}\s[a-z]{2,}\s[^|]*[.:;]\s*$")


@pytest.mark.parametrize("page", EXECUTED)
def test_hidden_blocks_print_values_or_table_rows_not_prose(page: str) -> None:
    """Sentences live in the Markdown. A hidden block (no ``source``) may print a table row or a
    value; a sentence it prints is prose an author would have to edit inside Python."""
    by_line = {b.line: b for b in ALL_BLOCKS[page]}
    prose = []
    for run in page_runs(page):
        for r in run.blocks:
            block = by_line[r.line]
            if block.options.get("source") or block.options.get("result"):
                continue
            for line in r.output.splitlines():
                if line.strip() and not line.lstrip().startswith("|") and SENTENCE.search(line):
                    prose.append(f"docs/{page}:{r.line}: {line.strip()[:100]!r}")
    assert not prose, "hidden blocks that print sentences (write them in the page's Markdown):\n" + "\n".join(prose)


@pytest.mark.parametrize("page", sorted(ALL_BLOCKS))
def test_every_python_block_runs_or_says_why(page: str) -> None:
    for block in ALL_BLOCKS[page]:
        if block.language in {"python", "py", "pycon"}:
            assert block.executable or block.norun, (
                f"{block.where}: a Python block must carry exec=\"on\" or norun=\"reason\""
            )
            assert not (block.executable and block.norun), f"{block.where}: exec and norun together"
            assert block.norun != "", f"{block.where}: norun needs a reason"


@pytest.mark.parametrize("page", sorted(ALL_BLOCKS))
def test_sessions_belong_to_their_page(page: str) -> None:
    """markdown-exec sessions are global across pages: a page's sessions carry its name."""
    stem = Path(page).with_suffix("").as_posix().replace("/", "-")
    for block in ALL_BLOCKS[page]:
        if block.executable:
            session = block.options.get("session", "")
            assert session == stem or session.startswith(stem + "-"), (
                f"{block.where}: session must be {stem!r} or start with {stem + '-'!r}")


if NORUN:  # parametrizing over an empty list would report a skip even when nothing is exempt

    @pytest.mark.parametrize("block", NORUN, ids=[b.where for b in NORUN])
    def test_blocks_that_do_not_run(block) -> None:
        """Each exempt block is reported as an explicit skip with its reason."""
        pytest.skip(f"{block.where}: norun: {block.norun}")


def test_block_parser_finds_indented_fences(tmp_path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '# t\n\n=== "Tab"\n\n    ```python exec="on" session="page"\n    x = 1\n    ```\n\n'
        '```python norun="needs a GPU"\ny = 2\n```\n'
    )
    found = blocks(page, tmp_path)
    assert [(b.line, b.executable, b.norun, b.code) for b in found] == [
        (6, True, None, "x = 1\n"),
        (10, False, "needs a GPU", "y = 2\n"),
    ]


def test_failure_names_page_and_line(tmp_path) -> None:
    page = tmp_path / "broken.md"
    page.write_text('# t\n\n```python exec="on" session="broken"\nx = 1\nraise RuntimeError("boom")\n```\n\n'
                    '```python exec="on" session="broken"\nprint("never")\n```\n')
    run = pageexec.run_session("broken.md", "broken", blocks(page, tmp_path))
    assert run.error_line == 5 and run.error.startswith("docs/broken.md:5: RuntimeError: boom")
    assert 'File "docs/broken.md", line 5' in run.error and "pageexec" not in run.error
    assert len(run.blocks) == 1  # the block after the failure did not run


def write_page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "p.md"
    page.write_text(text)
    return page


def test_values_are_taken_where_the_sentence_stands(tmp_path) -> None:
    page = write_page(tmp_path, '```python exec="on" session="p"\nx = 1\n```\n\nFirst {{ x }}, early {{ y }}.\n\n'
                                '```python exec="on" session="p"\nx = 2\ny = 0.5\n```\n\nThen {{ x }}.\n')
    run = pageexec.run_session("p.md", "p", blocks(page, tmp_path))
    text, errors = pageprose.substitute(page.read_text(), [run])
    assert not errors
    assert "First 1, early 0.500." in text and "Then 2." in text


def test_prose_errors_name_the_line(tmp_path) -> None:
    page = write_page(tmp_path, '```python exec="on" session="p"\nok = 1 > 2\nn = 3\nflag = 1\n```\n\n'
                                'A {{ nothing }}.\nB.{{ check: ok }}\nC {{ n:bogus }}\nD.{{ check: flag }}\n'
                                'E {{ ok }}\n')
    run = pageexec.run_session("p.md", "p", blocks(page, tmp_path))
    _, errors = pageprose.substitute(page.read_text(), [run])
    assert [e.line for e in errors] == [7, 8, 9, 10, 11]
    assert "not a number" in errors[0].message and "is false" in errors[1].message
    assert "unknown spec" in errors[2].message and "not a boolean" in errors[3].message
    assert "check" in errors[4].message  # a boolean stated as a value must be a check


@pytest.mark.parametrize("text", ["Inline [[claim: softmax.vjp]] marker.", "[[claim: softmax.vjp]", "A {{ x }",
                                  "[[claim softmax.vjp]]", "{{x}}"])
def test_malformed_markers_are_errors(text: str) -> None:
    assert pageprose.leftover_markers(f"# t\n\n{text}\n", allowed=MARKER_LINES), text


def test_markers_in_code_and_math_are_not_prose() -> None:
    text = "# t\n\n`{{ x }}` and \\(x^{{a}}\\)\n\n```python\nf'{{x}}'\n```\n\n[[claim: softmax.vjp]]\n"
    assert pageprose.leftover_markers(text, allowed=MARKER_LINES) == []


def test_a_prose_edit_reuses_the_cached_run(tmp_path, monkeypatch) -> None:
    import buildcache

    monkeypatch.setattr(buildcache, "CACHE", tmp_path / "cache")
    page = write_page(tmp_path, '# t\n\n```python exec="on" session="p"\nx = 1\n```\n\nText {{ x }}.\n')
    first = pageexec.run_pages([page], tmp_path)[("p.md", "p")]
    page.write_text('# t\n\nA new paragraph.\n\n```python exec="on" session="p"\nx = 1\n```\n\nText {{ x }}.\n')
    second = pageexec.run_pages([page], tmp_path)[("p.md", "p")]
    assert not first.cached and second.cached and second.blocks[0].line == first.blocks[0].line + 2
    page.write_text('# t\n\n```python exec="on" session="p"\nx = 2\n```\n')
    assert not pageexec.run_pages([page], tmp_path)[("p.md", "p")].cached
