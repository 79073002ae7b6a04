"""Per-page work whose input did not change is remembered between builds.

Two steps of every build cost about half of a warm build's time (and of every ``mkdocs serve``
rebuild) and depend only on their input, which for every unedited page is what it was the last
time:

- Material's search plugin parses each page's HTML into sections
  (``SearchIndex.add_entry_from_context``): its input is the page's HTML, URL, title, table of
  contents and front matter, its output the index entries it appends;
- pymdownx's Pygments highlighting of each code block (``Highlight.highlight``): its input is
  the code and the block's options together with the highlighter's settings, its output HTML.

:func:`install` wraps both so that an input seen before gives the output remembered for it;
anything else runs as before. What a build used is kept in memory for the next ``mkdocs serve``
rebuild and written to ``.cache/build/memo`` (keyed on the versions of the libraries that
compute it and on this file) for the next build; entries no build used since are dropped.
:func:`in_process` does the same, in memory only, for the hooks' own last step of each page.
``tests/test_buildmemo.py`` checks that a build through the memo writes the same site as a
build without it, and that an edit is seen.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
from pathlib import Path

from buildcache import read_json_store, store_for, write_json_store

LIBRARIES = ("mkdocs-material", "pymdown-extensions", "pygments", "markdown")

_memo: dict[str, dict] = {"previous": {}, "current": {}}
_state = {"loaded": False, "misses": 0}
_local: set[str] = set()  # keys kept in memory only (not written by save)
ORIGINAL: dict = {}  # the wrapped functions, as the libraries define them


def _store() -> Path:
    versions = "".join(f"{name}=={importlib.metadata.version(name)}" for name in LIBRARIES)
    return store_for("memo", "pages", Path(__file__), versions)


def new_build() -> None:
    """At the start of each build: what the last build used becomes what this one can reuse."""
    if not _state["loaded"]:
        _state["loaded"] = True
        _memo["current"] = read_json_store(_store())
    _memo["previous"], _memo["current"] = _memo["current"], {}
    _state["misses"] = 0


def save() -> None:
    """At the end of a build: keep what it used, for the next build in another process."""
    if not _state["misses"] and _memo["current"].keys() == _memo["previous"].keys():
        return
    write_json_store(_store(), {key: value for key, value in _memo["current"].items() if key not in _local})


def _recall(key: str, count_miss: bool = True):
    for generation in ("current", "previous"):
        if key in _memo[generation]:
            _memo["current"][key] = value = _memo[generation][key]
            return value
    _state["misses"] += count_miss
    return None


def in_process(kind: str, key_parts: tuple, compute):
    """``compute()``'s ``(value, problems)``, remembered for this process under ``key_parts`` while it
    reports no problem (a page with problems is computed, and its problems reported, every time)."""
    key = _key(kind, *key_parts)
    remembered = _recall(key, count_miss=False)
    if remembered is not None:
        return remembered
    value, problems = compute()
    if not problems:
        _memo["current"][key] = (value, problems)
        _local.add(key)
    return value, problems


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=repr, sort_keys=True).encode()).hexdigest()


def _toc(items) -> list:
    return [[item.id, item.url, str(item.title), _toc(item.children)] for item in items]


def install() -> None:
    """Wrap the search indexer and the highlighter (once per process)."""
    from material.plugins.search.plugin import SearchIndex
    from pymdownx.highlight import Highlight

    if getattr(SearchIndex, "_verified_backprop_memo", False):
        return
    index_page, highlight = SearchIndex.add_entry_from_context, Highlight.highlight
    ORIGINAL.update(index_page=index_page, highlight=highlight)

    def remembered_index_page(self, page):
        key = _key("search", page.content, page.url, str(page.title), page.meta, _toc(page.toc), self.config)
        entries = _recall(key)
        if entries is None:  # index the page, and remember what it added
            before = len(self.entries)
            index_page(self, page)
            _memo["current"][key] = copy.deepcopy(self.entries[before:])
        else:
            self.entries.extend(copy.deepcopy(entries))

    def remembered_highlight(self, src, language, *args, **kwargs):
        if kwargs.get("title") or len(args) > 9:  # a title may be stashed in self.md's htmlStash: not pure
            return highlight(self, src, language, *args, **kwargs)
        settings = {name: value for name, value in vars(self).items() if name != "md"}
        key = _key("highlight", src, language, args, kwargs, settings)
        html = _recall(key)
        if html is None:
            html = _memo["current"][key] = highlight(self, src, language, *args, **kwargs)
        return html

    SearchIndex.add_entry_from_context = remembered_index_page
    Highlight.highlight = remembered_highlight
    SearchIndex._verified_backprop_memo = True
