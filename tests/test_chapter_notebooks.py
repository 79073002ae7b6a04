"""Every chapter downloads as a Jupyter notebook that runs top to bottom in a fresh kernel.

The build makes each notebook from the page's source (``scripts/chapternotebook.py``); these
tests make them the same way and run them with nbclient, as a reader would after
``pip install`` of the package.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

import buildcache
import chapternotebook
import notebooks
import pageexec
import pageprose
from conftest import DOCS, ROOT

CHAPTERS = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md")
                  if chapternotebook.has_shown_code(p.read_text(encoding="utf-8")))


def chapter(page: str):
    text = (DOCS / page).read_text(encoding="utf-8")
    runs = [run for (p, _), run in pageexec.run_pages([DOCS / page], DOCS).items() if p == page]
    filled, errors = pageprose.substitute(text, runs)
    assert not errors
    return chapternotebook.build(filled, page)


def test_the_chapters_are_the_pages_with_code() -> None:
    assert {"attention-gradients.md", "transformer-backward.md", "gradient-flow.md"} <= set(CHAPTERS)
    assert "index.md" not in CHAPTERS


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_notebook_runs_in_a_fresh_kernel(page: str, tmp_path) -> None:
    nb = chapter(page)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    blocks = (DOCS / page).read_text(encoding="utf-8").count('exec="on"')
    assert len(code) == blocks, f"{page}: {len(code)} code cells for {blocks} executed blocks"
    passed = _passed_marker(nb)
    if passed.exists():  # this very notebook ran to the end with this package and these libraries
        return
    try:
        notebooks.execute(nb, tmp_path)  # a folder of its own: nothing of the repository's but the package
    except notebooks.NotebookError as error:
        pytest.fail(f"{page} as a notebook: {error}", pytrace=False)
    passed.write_text(page + "\n", encoding="utf-8")


def _passed_marker(nb) -> Path:
    """Where a run of ``nb`` that passed is remembered: under a hash of everything the run depends on
    (the notebook's bytes, the ``derivations`` package, the runner, Python and the locked libraries,
    the frameworks among them), as the build caches the pages' own runs. Only a pass is remembered."""
    digest = hashlib.sha256(chapternotebook.dumps(nb).encode())
    digest.update(buildcache.source_hash("derivations").encode())
    for path in (Path(notebooks.__file__), *sorted((ROOT / "requirements").glob("*.lock"))):
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    return buildcache.path_for("chapter-notebooks", digest.hexdigest()[:24], ".passed")


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_notebook_has_no_site_only_syntax(page: str) -> None:
    nb = chapter(page)
    assert chapternotebook.dumps(nb) == chapternotebook.dumps(chapter(page)), "two builds differ"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for marker in ("[[claim:", "{{", "!!! ", '=== "'):
                assert marker not in cell.source, f"{page}: {marker!r} left in a Markdown cell:\n{cell.source[:300]}"


def test_admonitions_and_tabs_become_plain_markdown() -> None:
    text = '# T\n\n!!! note "Why"\n    Because.\n\n    More.\n\n=== "Index form"\n\n    \\(a\\)\n\nAfter.\n'
    nb = chapternotebook.build(text, "T")
    (cell,) = nb.cells
    assert "> **Why**" in cell.source and "> Because." in cell.source and "> More." in cell.source
    assert "**Index form**" in cell.source and "\n\\(a\\)" in cell.source and cell.source.endswith("After.")
