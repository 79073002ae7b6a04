"""The build's memos give exactly what the work they skip would give, and notice a changed input.

``scripts/buildmemo.py`` stands in for Material's search indexing and pymdownx's highlighting of
unchanged pages; ``mathrender.KatexRenderer`` keeps KaTeX's renderings in a file. A memo that
answered for a changed input would show readers a stale page, so each test changes one input
and checks that the work runs again.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import buildmemo
import mathrender


@pytest.fixture
def memo(tmp_path, monkeypatch):
    """The memo installed, empty, and stored under ``tmp_path`` instead of the build cache."""
    buildmemo.install()
    monkeypatch.setattr(buildmemo, "_store", lambda: tmp_path / "memo.json")
    monkeypatch.setattr(buildmemo, "_memo", {"previous": {}, "current": {}})
    monkeypatch.setattr(buildmemo, "_state", {"loaded": False, "misses": 0})
    buildmemo.new_build()
    return tmp_path / "memo.json"


def _page(content: str, title: str = "Softmax and its gradient"):
    from mkdocs.structure.toc import get_toc

    toc = get_toc([{"level": 1, "id": "softmax", "name": "Softmax", "html": "Softmax", "data-toc-label": "", "children": [
        {"level": 2, "id": "its-jacobian", "name": "Its Jacobian", "html": "Its Jacobian", "data-toc-label": "",
         "children": []}]}])
    return SimpleNamespace(content=content, url="softmax/", title=title, meta={}, toc=toc)


PAGE = ('<p>Before any heading: its section takes the page title.</p>'
        '<h1 id="softmax">Softmax</h1><p>The map <code>s = softmax(z)</code>.</p>'
        '<h2 id="its-jacobian">Its Jacobian</h2><p>Diagonal minus an outer product.</p>')


def _entries(page, index_page) -> list[dict]:
    from material.plugins.search.plugin import SearchIndex

    index = SearchIndex(separator=r"[\s\-]+")
    index_page(index, page)
    return index.entries


def test_search_entries_come_from_the_memo_only_for_the_same_page(memo, monkeypatch) -> None:
    from material.plugins.search import plugin

    page = _page(PAGE)
    expected = _entries(page, buildmemo.ORIGINAL["index_page"])
    # the control: real sections, the first titled by the page
    assert [(e["location"], e["title"]) for e in expected] == [
        ("softmax/", "Softmax and its gradient"), ("softmax/#softmax", "Softmax"),
        ("softmax/#its-jacobian", "Its Jacobian")], expected
    assert _entries(page, plugin.SearchIndex.add_entry_from_context) == expected  # computed, remembered
    monkeypatch.setattr(plugin, "Parser", None)  # from here on, parsing a page would raise
    assert _entries(page, plugin.SearchIndex.add_entry_from_context) == expected  # remembered
    for changed in (_page(PAGE.replace("outer product", "rank-one update")), _page(PAGE, title="The softmax")):
        with pytest.raises(TypeError):  # a changed text or title is parsed again
            _entries(changed, plugin.SearchIndex.add_entry_from_context)


def test_highlighting_comes_from_the_memo_only_for_the_same_code_and_settings(memo, monkeypatch) -> None:
    from pymdownx import highlight

    code = "dz = s * (g - (g * s).sum())\n"
    expected = buildmemo.ORIGINAL["highlight"](highlight.Highlight(None), code, "python")
    assert '<span class="n">dz</span>' in expected  # the control: Pygments did highlight it
    assert highlight.Highlight(None).highlight(code, "python") == expected
    monkeypatch.setattr(highlight, "get_lexer_by_name", None)  # from here on, highlighting would raise
    assert highlight.Highlight(None).highlight(code, "python") == expected
    for changed in [lambda h: h.highlight(code.replace("dz", "dx"), "python"),
                    lambda h: h.highlight(code, "text"),
                    lambda h: h.highlight(code, "python", code_block_count=3)]:
        with pytest.raises(TypeError):
            changed(highlight.Highlight(None))
    with pytest.raises(TypeError):  # the highlighter's own settings are part of the input too
        highlight.Highlight(None, linenums=True).highlight(code, "python")


def test_what_a_build_used_is_stored_and_what_it_did_not_is_dropped(memo) -> None:
    old, new = _page(PAGE), _page(PAGE.replace("Softmax", "Softmax, again"))
    _entries(old, __import__("material.plugins.search.plugin", fromlist=["x"]).SearchIndex.add_entry_from_context)
    buildmemo.save()
    first = json.loads(memo.read_text())
    assert len(first) == 1
    buildmemo.new_build()  # the next build indexes only the edited page
    from material.plugins.search.plugin import SearchIndex

    _entries(new, SearchIndex.add_entry_from_context)
    buildmemo.save()
    second = json.loads(memo.read_text())
    assert len(second) == 1 and second.keys() != first.keys()
    # A new process reads the file: the edited page is remembered.
    buildmemo._memo.update(previous={}, current={})
    buildmemo._state.update(loaded=False)
    buildmemo.new_build()
    assert buildmemo._memo["previous"] == second
    # In the plugin's key order: the index is written from these dicts, and a warm build's index must
    # be the same bytes as a cold one's.
    (entries,) = second.values()
    assert [list(entry) for entry in entries] == [["location", "title", "text"]] * len(entries)


def test_katex_renderings_are_read_back_without_starting_node(tmp_path) -> None:
    store = tmp_path / "formulas.json"
    with mathrender.KatexRenderer(store) as katex:
        good, bad = katex.render(r"\frac{\partial L}{\partial x}", False), katex.render(r"\frac{1}{", True)
    assert "katex" in good["html"] and "error" in bad
    again = mathrender.KatexRenderer(store)
    assert again.render(r"\frac{\partial L}{\partial x}", False) == good
    assert again.render(r"\frac{1}{", True) == bad  # a rejected formula stays rejected: the build still fails
    assert again._process is None  # nothing rendered anew
    assert again.render(r"\frac{\partial L}{\partial x}", True) != good  # display mode is part of the key
    assert again._process is not None
    again.close()
    assert len(json.loads(store.read_text())) == 3


def test_the_katex_store_stays_bounded(tmp_path) -> None:
    """Past its limit the store keeps only the formulas of the last run, so it cannot grow forever."""
    store = tmp_path / "formulas.json"
    with mathrender.KatexRenderer(store, keep=2) as katex:
        for tex in ("a", "b"):
            katex.render(tex, False)
    with mathrender.KatexRenderer(store, keep=2) as katex:
        katex.render("c", False)  # a third formula: over the limit, the unused two are dropped
    assert set(json.loads(store.read_text())) == {"Ic"}
    with mathrender.KatexRenderer(store, keep=5) as katex:
        katex.render("d", False)  # under the limit: everything stays
    assert set(json.loads(store.read_text())) == {"Ic", "Id"}


def test_a_store_is_keyed_on_its_code_and_library_versions(tmp_path) -> None:
    """The memo, the KaTeX renderings and the formula readings each live in a store named by the file
    that computes them and the library versions: either changing must give another store."""
    from buildcache import store_for

    code = tmp_path / "code.py"
    code.write_text("print(1)\n")
    first = store_for("memo", "test", code, "lib==1.0")
    assert store_for("memo", "test", code, "lib==1.0") == first
    assert store_for("memo", "test", code, "lib==1.1") != first
    code.write_text("print(2)\n")
    assert store_for("memo", "test", code, "lib==1.0") != first
