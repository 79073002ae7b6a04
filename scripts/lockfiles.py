"""Write the two lock files from a working environment: what building the site needs, and what
the tests add.

``.venv/bin/python scripts/lockfiles.py`` reads the installed distributions of the venv it runs
in, takes the dependency closure of the package plus its ``site`` and ``frameworks`` extras
(everything ``mkdocs build`` imports: the autodiff chapter runs PyTorch, JAX and TensorFlow at
build time), and writes it pinned to ``requirements/site.lock``; the closure of the ``test``
extra minus that goes to ``requirements/test.lock``. ``scripts/bootstrap`` installs the first
for ``scripts/serve`` and both for ``scripts/test``. Run it after changing a pin in
``pyproject.toml`` and installing it.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
HEADERS = {
    "site": "# What building and serving the site needs, pinned (scripts/lockfiles.py writes it).\n"
            "# It includes PyTorch, JAX and TensorFlow: the autodiff chapter runs them at build time.\n",
    "test": "# What the tests add to requirements/site.lock, pinned (scripts/lockfiles.py writes it).\n",
}


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: list[Requirement], installed: dict) -> set[str]:
    seen: set[str] = set()
    stack = [(_name(r.name), frozenset(r.extras)) for r in roots]
    while stack:
        name, extras = stack.pop()
        if name not in installed or (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in installed[name].requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            stack.append((_name(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in seen}


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    installed = {_name(d.metadata["Name"]): d for d in metadata.distributions()}
    installed.pop("derivations", None)
    site_roots = [Requirement(r) for r in project["dependencies"] + extras["site"] + extras["frameworks"]]
    site = _closure(site_roots, installed)
    test = _closure([Requirement(r) for r in extras["test"]], installed) - site
    missing = [r.name for r in site_roots + [Requirement(r) for r in extras["test"]] if _name(r.name) not in installed]
    if missing:
        print(f"not installed in this environment: {', '.join(missing)}", file=sys.stderr)
        return 1
    for part, names in (("site", site), ("test", test)):
        # Without local labels ("2.13.0+cpu" -> "2.13.0"): "==2.13.0" accepts the CPU build where one is
        # offered (this machine's wheel folder) and PyPI's build elsewhere.
        pins = sorted(f"{installed[n].metadata['Name']}=={installed[n].version.split('+')[0]}" for n in names)
        (ROOT / "requirements" / f"{part}.lock").write_text(HEADERS[part] + "\n".join(pins) + "\n")
        print(f"requirements/{part}.lock: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
