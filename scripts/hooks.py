"""MkDocs hooks: the only place the site meets the ``derivations`` package.

- ``[[claim: id]]`` lines become the claim's formula and proof badge; the claims
  page is generated from the registry and this build's verification.
- Figures from ``derivations.figures`` are added to the build as ``vis/<name>.svg``.
- KaTeX renders every formula into the HTML; a formula it rejects fails the build.

Each step is a plain function in a sibling module, so tests call the same code
and another static-site generator could too. Anything that goes wrong is logged
as an error naming the page (and line), which makes ``mkdocs build --strict`` fail.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from mkdocs.structure.files import File

# One BLAS thread for the pages' small matrix products (threaded BLAS on 2 cores is far slower);
# effective because NumPy is first imported below, by the derivations package.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import buildcache  # noqa: E402
import claimsmd  # noqa: E402
import claimsrecord  # noqa: E402
import mathrender  # noqa: E402
import notebookpage  # noqa: E402

log = logging.getLogger("mkdocs.hooks.verified_backprop")

_state: dict = {}


# ----------------------------------------------------------------------------- claims verification


def _start_verification() -> None:
    """Prove the claims (or read this source's record) in a thread while pages render."""

    def run() -> None:
        try:
            _state["verify_results"], _ = claimsrecord.ensure_verified()
        except Exception as error:  # reported when the results are needed
            _state["verify_error"] = error

    _state["verify_thread"] = threading.Thread(target=run, daemon=True)
    _state["verify_thread"].start()


def _verification_results() -> dict[str, dict]:
    """Wait for this build's verification and return ``{claim id: result}``."""
    _state["verify_thread"].join()
    if "verify_error" in _state:
        log.error("%s", _state.pop("verify_error"))
        _state["verify_results"] = {}
    return _state["verify_results"]


# ----------------------------------------------------------------------------- hooks


def on_config(config):
    _state.clear()
    _state["started"] = time.perf_counter()
    # MkDocs stamps the sitemap (and its gzip header) with the build date; the date of the last
    # commit makes two builds of the same commit identical on any day.
    os.environ.setdefault("SOURCE_DATE_EPOCH", _last_commit_time())
    # Under `mkdocs serve` every rebuild runs in the same process: drop the derivations package
    # so that pages and figures import the code as it is now, not as it was at the first build.
    for name in [m for m in sys.modules if m == "derivations" or m.startswith("derivations.")]:
        del sys.modules[name]
    # mkdocs-jupyter keys its cache of executed notebooks on the notebook's bytes alone; a change
    # to the package the notebook imports must re-run it, so the package's hash names the folder.
    _state["package_hash"] = buildcache.source_hash("derivations")  # keys the figures and the notebook
    jupyter = config.plugins.get("mkdocs-jupyter")
    if jupyter is not None and jupyter.config.get("cache"):
        jupyter.config["cache_dir"] = str(buildcache.CACHE / "notebooks" / _state["package_hash"])
    _start_verification()
    return config


def _last_commit_time() -> str:
    try:
        run = subprocess.run(["git", "log", "-1", "--format=%ct"], cwd=buildcache.ROOT, capture_output=True, text=True)
    except OSError:
        return "0"
    return run.stdout.strip() or "0"


def on_files(files, config):
    # Which page cites which claim, read before any page renders so the claims page can list them.
    cited_by: dict[str, list[tuple[str, str]]] = {}
    for file in files.documentation_pages():
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        if file.src_uri.endswith(".ipynb"):
            text = claimsmd.notebook_markdown(text)
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), file.name)
        for citation in claimsmd.find_citations(text):
            for item_id in [citation.claim_id, *claimsmd.cited_claims(citation)]:  # a derivation cites its claim
                pages = cited_by.setdefault(item_id, [])
                if (title, file.src_uri) not in pages:
                    pages.append((title, file.src_uri))
    _state["cited_by"] = cited_by

    for site_path, source in mathrender.katex_assets():
        files.append(File.generated(config, site_path, abs_src_path=str(source)))

    from derivations.figures import FIGURES

    key = _state["package_hash"]
    for name in sorted(FIGURES):
        cached = buildcache.path_for("figures", f"{name}-{key}", ".svg")
        if not cached.exists():
            start = time.perf_counter()
            try:
                svg = FIGURES[name]()
            except Exception as error:  # a figure that fails must fail the build, with its name
                log.error("figure %r (derivations.figures) failed: %s: %s", name, type(error).__name__, error)
                continue
            cached.write_text(svg, encoding="utf-8")
            log.debug("figure %s drawn in %.2f s", name, time.perf_counter() - start)
        files.append(File.generated(config, f"vis/{name}.svg", abs_src_path=str(cached)))
    return files


def _renderer():
    if "renderer" not in _state:
        _state["renderer"] = mathrender.KatexRenderer()
    return _state["renderer"]


def on_page_markdown(markdown, page, config, files):
    markdown, errors = claimsmd.expand(markdown, page.file.src_uri, _renderer())
    for error in errors:
        log.error("docs/%s: %s", page.file.src_uri, error)
    if page.file.src_uri == claimsmd.CLAIMS_PAGE:
        table, errors = claimsmd.claims_page(_state["cited_by"], _verification_results(), _renderer())
        for error in errors:
            log.error("docs/%s: %s", page.file.src_uri, error)
        if "[[claims-table]]" not in markdown:
            log.error("docs/%s: the [[claims-table]] placeholder is missing", page.file.src_uri)
        markdown = markdown.replace("[[claims-table]]", table)
    return markdown


def on_post_page(output, page, config):
    _renderer()
    if page.file.src_uri.endswith(".ipynb"):
        try:
            output = notebookpage.strip_remote_loaders(output)
        except ValueError as error:
            log.error("docs/%s: %s", page.file.src_uri, error)
        output, errors = claimsmd.expand_html(output, page.url, renderer=_state["renderer"])
        for error in errors:
            log.error("docs/%s: %s", page.file.src_uri, error)
    source = Path(page.file.abs_src_path).read_text(encoding="utf-8") if page.file.abs_src_path else None
    output, errors = mathrender.render_page(output, _state["renderer"], source)
    for error in errors:
        where = f"docs/{page.file.src_uri}" + (f":{error.line}" if error.line else " (formula not in the source: from a claim?)")
        log.error("%s: KaTeX cannot render %r: %s", where, error.tex, error.message)
    return output


def on_post_build(config):
    renderer = _state.pop("renderer", None)
    if renderer is not None:
        renderer.close()
    results = _verification_results()
    for claim_id, result in results.items():
        if not result["ok"]:
            log.error("claim %s failed SymPy verification: %s", claim_id, result["detail"])
    log.info("verified_backprop hooks: build finished in %.1f s", time.perf_counter() - _state["started"])


def on_shutdown():
    renderer = _state.pop("renderer", None)
    if renderer is not None:
        renderer.close()
