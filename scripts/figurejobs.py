"""Draw the figures of ``derivations.figures`` that are not cached yet, in a process of their own.

``python scripts/figurejobs.py <key>`` draws every missing variant of every figure into
``.cache/build/figures`` and prints one JSON line per failure, ``{"figure": name,
"error": message}``; the build runs it beside the pages and reports the failures. The
key is the hash of the ``derivations`` source, so a change to any figure's code (or to
what it draws from) draws it again.

Variants (``VARIANTS``): the drawing for a page column (``""``), its dark-scheme version
(``"-dark"``, colours mapped by ``_svg.dark``, not drawn again), and for the figures in
``NARROW`` the phone layout and its dark version (``"-narrow"``, ``"-narrow-dark"``). The
site serves variant ``v`` of figure ``name`` at ``vis/<name><v>.svg``.
"""

from __future__ import annotations

import ast
import json
import sys
import threading
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import buildcache  # noqa: E402

VARIANTS = ("", "-dark", "-narrow", "-narrow-dark")


def figure_path(name: str, key: str, variant: str = "") -> Path:
    if variant not in VARIANTS:
        raise ValueError(f"unknown figure variant {variant!r}; known: {VARIANTS}")
    return buildcache.path_for("figures", f"{name}{variant}-{key}", ".svg")


def catalogue(package: Path | None = None) -> dict[str, list[str]]:
    """Every figure's name and its variants: all four if it draws a narrow layout, else two.

    Read from the makers' ``@register("name", narrow=True)`` decorators in the source of
    ``derivations/figures``, without importing them (matplotlib and all: a second at the start of a
    cold build, before the figures could start drawing). A ``register`` call whose name or ``narrow``
    is not written as a literal cannot be read this way, and is an error naming its file and line.
    """
    package = package or buildcache.ROOT / "derivations" / "figures"
    figures: dict[str, list[str]] = {}
    for source in sorted(package.glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
        shown = source.relative_to(buildcache.ROOT) if source.is_relative_to(buildcache.ROOT) else source
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "register"):
                continue
            where = f"{shown}:{node.lineno}"
            arguments = {**dict(zip(("name", "narrow"), node.args)), **{k.arg: k.value for k in node.keywords}}
            name, narrow = arguments.get("name"), arguments.get("narrow", ast.Constant(False))
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)
                    and isinstance(narrow, ast.Constant) and isinstance(narrow.value, bool)):
                raise ValueError(f"{where}: register(...) needs a literal name and narrow=True/False "
                                 f"(the build reads them without importing the figure makers)")
            if name.value in figures:
                raise ValueError(f"{where}: figure {name.value!r} registered twice")
            figures[name.value] = list(VARIANTS if narrow.value else VARIANTS[:2])
    return dict(sorted(figures.items()))


def all_drawn(key: str, figures: dict[str, list[str]]) -> bool:
    """Whether every variant of every figure of ``figures`` (a :func:`catalogue`) is drawn."""
    return all(figure_path(name, key, v).exists() for name, variants in figures.items() for v in variants)


def _write(path: Path, svg: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(svg, encoding="utf-8")
    partial.replace(path)


def draw_missing(key: str) -> list[dict]:
    training = _start_training()  # before the figure makers' imports: the child starts at once
    import matplotlib

    matplotlib.use("Agg")
    from derivations.figures import FIGURES, _svg, render

    failures = []
    figures = catalogue()
    for name in sorted(FIGURES):
        for layout in ("wide", "narrow") if "-narrow" in figures[name] else ("wide",):
            suffix = "" if layout == "wide" else "-narrow"
            light, dark = figure_path(name, key, suffix), figure_path(name, key, suffix + "-dark")
            if light.exists() and dark.exists():
                continue
            try:
                svg = render(name, layout)
                dark_svg = _svg.dark(svg)
            except Exception as error:  # noqa: BLE001 - a failing figure is reported by name, not fatal here
                failures.append({"figure": f"{name} ({layout})", "error": f"{type(error).__name__}: {error}",
                                 "traceback": traceback.format_exc()})
                continue
            _write(light, svg)
            _write(dark, dark_svg)
    training.join()
    return failures


def _start_training() -> threading.Thread:
    """Start the chapter's training run (or find it cached) now, in the background.

    The transformer figures, a page and the exercises need it, and it trains in a child process of
    its own (``load_or_train``): begun here, it runs beside the first figures instead of after
    them, and the build's other jobs that wait on its lock are released that much sooner.
    A failure is left for the figures that need the run to report.
    """
    from derivations.reference.train import load_or_train

    def warm() -> None:
        try:
            load_or_train()
        except Exception:  # noqa: BLE001 - the figures calling load_or_train report it by name
            pass

    thread = threading.Thread(target=warm, daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    for failure in draw_missing(sys.argv[1]):
        print(json.dumps(failure))
