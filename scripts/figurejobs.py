"""Draw the figures of ``derivations.figures`` that are not cached yet, in a process of their own.

``python scripts/figurejobs.py <key>`` draws every missing ``<name>-<key>.svg`` into
``.cache/build/figures`` and prints one JSON line per failure, ``{"figure": name,
"error": message}``; the build runs it beside the pages and reports the failures. The
key is the hash of the ``derivations`` source, so a change to any figure's code (or to
what it draws from) draws it again.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import buildcache  # noqa: E402


def figure_path(name: str, key: str) -> Path:
    return buildcache.path_for("figures", f"{name}-{key}", ".svg")


def draw_missing(key: str) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    from derivations.figures import FIGURES

    failures = []
    for name in sorted(FIGURES):
        target = figure_path(name, key)
        if target.exists():
            continue
        try:
            svg = FIGURES[name]()
        except Exception as error:  # noqa: BLE001 - a failing figure is reported by name, not fatal here
            failures.append({"figure": name, "error": f"{type(error).__name__}: {error}",
                             "traceback": traceback.format_exc()})
            continue
        partial = target.with_suffix(".partial")
        partial.write_text(svg, encoding="utf-8")
        partial.replace(target)
    return failures


if __name__ == "__main__":
    for failure in draw_missing(sys.argv[1]):
        print(json.dumps(failure))
