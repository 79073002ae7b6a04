"""Every Python block of every page runs, in page order, one namespace per page.

The build runs the same blocks through markdown-exec; this test runs them
without MkDocs so a failure names ``docs/<page>.md:<line>`` in the traceback.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

from conftest import DOCS
from docblocks import blocks, links_in_output, run_page

matplotlib.use("Agg")

PAGES = sorted(p for p in DOCS.rglob("*.md"))
ALL_BLOCKS = {p.relative_to(DOCS).as_posix(): blocks(p, DOCS) for p in PAGES}
NORUN = [b for page in ALL_BLOCKS.values() for b in page if b.norun is not None]


@pytest.mark.parametrize("page", [p for p, bs in ALL_BLOCKS.items() if any(b.executable for b in bs)])
def test_page_blocks_run(page: str) -> None:
    printed = run_page(ALL_BLOCKS[page])
    linked = [f"{block.where}: {links}" for block, output in printed if (links := links_in_output(block, output))]
    assert not linked, "links in printed Markdown break (write them in the page's prose):\n" + "\n".join(linked)


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
def test_one_session_per_page(page: str) -> None:
    """markdown-exec sessions are global across pages: a page must use its own only."""
    stem = Path(page).with_suffix("").as_posix().replace("/", "-")
    for block in ALL_BLOCKS[page]:
        if block.executable:
            assert block.options.get("session") == stem, f"{block.where}: session must be {stem!r}"


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
    page.write_text('# t\n\n```python exec="on" session="broken"\nx = 1\nraise RuntimeError("boom")\n```\n')
    with pytest.raises(RuntimeError) as info:
        run_page(blocks(page, tmp_path))
    frame = info.traceback[-1]
    assert frame.path == Path("docs/broken.md") or str(frame.path).endswith("docs/broken.md")
    assert frame.lineno + 1 == 5  # pytest's lineno is 0-based
