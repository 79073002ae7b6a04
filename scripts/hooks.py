"""MkDocs hooks: the only place the site meets the ``derivations`` package.

- ``[[claim: id]]`` lines become the claim's formula and proof badge; the claims
  page is generated from the registry and this build's verification.
- ``[[exercise: id]]`` lines become the exercise of ``derivations.exercises`` (its prompt, a self-check
  and the worked solution, run once per package version; ``exercisesmd``).
- Figures from ``derivations.figures`` are added to the build as ``vis/<name>.svg``.
- KaTeX renders every formula into the HTML; a formula it rejects fails the build.

Each step is a plain function in a sibling module, so tests call the same code
and another static-site generator could too. Anything that goes wrong is logged
as an error naming the page (and line), which makes ``mkdocs build --strict`` fail.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

# One BLAS thread for the pages' small matrix products (threaded BLAS on 2 cores is far slower);
# effective because NumPy is first imported below.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The build's child processes (sessions, training, exercises, figures) allocate and free the same
# large NumPy arrays thousands of times; glibc would map and unmap each one, and the page faults cost
# a tenth of their CPU (gradient-flow 3.9 -> 3.2 s, training 4.8 -> 4.3 s). Keep freed memory for reuse.
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 * 2**20))
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(512 * 2**20))
os.environ.setdefault("MALLOC_TOP_PAD_", str(64 * 2**20))
# NumPy is first imported here, in the main thread, before on_config starts the background threads:
# a first import running in two threads at once (a cached page being unpickled while the figures
# module is imported) fails with "partially initialized module 'numpy._core.numeric'".
import numpy  # noqa: E402,F401

sys.path.insert(0, str(Path(__file__).resolve().parent))

import buildcache  # noqa: E402
import figurejobs  # noqa: E402
import figurepage  # noqa: E402
import htmlcheck  # noqa: E402
import chapternotebook  # noqa: E402
import claimsmd  # noqa: E402
import claimsnapshot  # noqa: E402,F401  (imported lazily by claimsmd; MkDocs drops our sys.path entry after loading the hooks)
import claimsrecord  # noqa: E402
import exercisesmd  # noqa: E402
import mathrender  # noqa: E402
import notebookpage  # noqa: E402
import notebooks  # noqa: E402
import outputblocks  # noqa: E402
import pageexec  # noqa: E402
import pageweight  # noqa: E402
import pageprose  # noqa: E402
import searchtext  # noqa: E402
import buildmemo  # noqa: E402

log = logging.getLogger("mkdocs.hooks.verified_backprop")

_state: dict = {}


# ----------------------------------------------------------------------------- background jobs


def _background(name: str, job) -> threading.Thread:
    """Run ``job`` in a thread and record its wall time under ``name`` for the build profile."""

    def timed() -> None:
        start = time.perf_counter()
        try:
            job()
        finally:
            _state["profile"][name] = time.perf_counter() - start

    thread = threading.Thread(target=timed, name=name, daemon=True)
    thread.start()
    return thread


# ----------------------------------------------------------------------------- claims verification


def _start_verification() -> None:
    """Prove the claims (or read this source's record) in a thread while pages render."""

    def run() -> None:
        try:
            # One process: the build's other jobs keep both cores busy, and a second prover would
            # only import SymPy and warm its caches again (8.1 s of CPU for two, 5.7 s for one).
            _state["verify_results"], _ = claimsrecord.ensure_verified(workers=1)
        except Exception as error:  # reported when the results are needed
            _state["verify_error"] = error

    _state["verify_thread"] = _background("claims", run)


def _verification_results() -> dict[str, dict]:
    """Wait for this build's verification and return ``{claim id: result}``."""
    _state["verify_thread"].join()
    if "verify_error" in _state:
        log.error("%s", _state.pop("verify_error"))
        _state["verify_results"] = {}
    return _state["verify_results"]


# ----------------------------------------------------------------------------- hooks


def on_startup(command, dirty):
    if command == "serve":
        _poll_faster()


def _poll_faster(interval: float = 0.1) -> None:
    """`mkdocs serve` looks for edited files every 0.5 s (``LiveReloadServer``'s default
    ``polling_interval``, which its command line does not expose), a quarter of the 2 s an
    edit may take to show; every 0.1 s costs a few stat calls more. Called before the server
    is made (``on_startup``)."""
    from mkdocs.livereload import LiveReloadServer

    if getattr(LiveReloadServer, "_verified_backprop_interval", None) == interval:
        return
    make = LiveReloadServer.__init__

    def faster(self, *args, polling_interval: float = interval, **kwargs):
        make(self, *args, polling_interval=polling_interval, **kwargs)

    LiveReloadServer.__init__ = faster
    LiveReloadServer._verified_backprop_interval = interval


def on_config(config):
    # Unchanged pages' search entries and code highlighting are reused (buildmemo).
    buildmemo.install()
    buildmemo.new_build()
    _state.clear()
    _state["started"] = time.perf_counter()
    _state["profile"] = {}
    # MkDocs stamps the sitemap (and its gzip header) with the build date; the date of the last
    # commit makes two builds of the same commit identical on any day.
    os.environ.setdefault("SOURCE_DATE_EPOCH", _last_commit_time())
    # Under `mkdocs serve` every rebuild runs in the same process: drop the derivations package
    # so that pages and figures import the code as it is now, not as it was at the first build.
    for name in [m for m in sys.modules if m == "derivations" or m.startswith("derivations.")]:
        del sys.modules[name]
    _state["package_hash"] = buildcache.source_hash("derivations")  # keys the figures and the pages
    _compile_package()
    jupyter = config.plugins.get("mkdocs-jupyter")
    if jupyter is not None:  # its cache is keyed on the file it renders: our executed, content-addressed copy
        jupyter.config["cache_dir"] = str(buildcache.CACHE / "jupyter")
    _start_verification()
    _start_pages(Path(config.docs_dir))
    _start_figures()
    _start_notebooks(Path(config.docs_dir))
    _background("exercises", exercisesmd.prepare)  # run the exercises (or read their cached run) meanwhile
    return config


def _compile_package() -> None:
    """Write the bytecode of the package and of these scripts before the build's children start
    (0.2 s once, then only a look at the files): where the shell sets PYTHONDONTWRITEBYTECODE, each
    of a cold build's fifteen or so processes would otherwise compile the same modules again.
    A module that does not compile is left to the import that needs it, which reports it."""
    import compileall

    compileall.compile_dir(str(buildcache.ROOT / "derivations"), quiet=2)
    compileall.compile_dir(str(buildcache.ROOT / "scripts"), quiet=2, maxlevels=0)


# ----------------------------------------------------------------------------- figures


def _start_figures() -> None:
    """Draw the missing figures in a child process (fresh imports, beside the pages) while the
    build goes on; ``on_env`` waits for it, before MkDocs copies the files."""
    key = _state["package_hash"]
    _state["figures"] = figurejobs.catalogue()
    _state["figure_names"] = sorted(_state["figures"])
    if figurejobs.all_drawn(key, _state["figures"]):
        _state["figure_thread"] = None
        return

    def run() -> None:
        import fcntl

        # One drawing process at a time (a build and a test worker may both start cold); the second
        # finds the figures the first drew.
        with open(buildcache.path_for("figures", "drawing", ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # PYTHONPATH: the figures of this checkout's package, not of an editable install sharing the venv.
            path = os.pathsep.join(filter(None, [str(buildcache.ROOT), os.environ.get("PYTHONPATH")]))
            child = subprocess.run([sys.executable, str(Path(figurejobs.__file__)), key], cwd=buildcache.ROOT,
                                   capture_output=True, text=True,
                                   env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path})
        failures = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
        if child.returncode != 0:
            failures.append({"figure": "(all)", "error": child.stderr.strip().splitlines()[-1:], "traceback": child.stderr})
        _state["figure_failures"] = failures

    _state["figure_thread"] = _background("figures", run)


def _title(text: str, default: str) -> str:
    """A page's title: its first level-1 heading, else ``default``."""
    return next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), default)


def _write_chapter_notebooks() -> None:
    for src, (notebook, text, name) in _state["notebook_files"].items():
        filled, _ = pageprose.substitute(text, _page_runs(src))  # errors are reported when the page renders
        title = _title(text, name)
        try:  # the same filled page gives the same notebook (under `mkdocs serve`, most pages are unchanged)
            content, _ = buildmemo.in_process("chapter notebook", (filled, title),
                                              lambda: (chapternotebook.dumps(chapternotebook.build(filled, title)), []))
        except Exception as error:  # noqa: BLE001 - reported with the page
            log.error("docs/%s: cannot make the chapter notebook: %s", src, error)
            continue
        notebook.content_string = content


def on_env(env, config, files):
    _write_chapter_notebooks()  # before MkDocs copies the files
    # The theme's templates compiled once, not at every build (and every `mkdocs serve` rebuild);
    # Jinja keys each entry on the template's name and source checksum, so an edited template recompiles.
    from jinja2 import FileSystemBytecodeCache

    env.bytecode_cache = FileSystemBytecodeCache(str(buildcache.path_for("jinja", "x", "").parent))
    if _state.get("figure_thread") is not None:
        _state["figure_thread"].join()
    for failure in _state.get("figure_failures", []):
        log.error("figure %r (derivations.figures) failed: %s\n%s", failure["figure"], failure["error"],
                  failure["traceback"])
    _state["drawings"] = figurepage.drawings(_state["figure_names"], _state["package_hash"])
    return env


# ----------------------------------------------------------------------------- executed pages


def _start_pages(docs: Path) -> None:
    """Execute every page's sessions (or read their cached runs) in parallel while the build starts,
    and make markdown-exec render those results instead of running the blocks itself.

    Sessions are started in the order MkDocs renders the pages (an index first, then by path), and a
    page waits only for its own (``_page_runs``), so the first pages render while later ones run."""
    import markdown_exec

    outputs = pageexec.PageOutputs()
    _state["outputs"] = outputs
    for language in ("python", "py"):
        markdown_exec.formatters[language] = outputblocks.marking(outputs.format)  # outputs marked as such
    started = time.perf_counter()
    try:
        _state["page_runs"] = pageexec.PageRuns(sorted(docs.rglob("*.md"), key=lambda p: _render_order(p, docs)), docs)
    except Exception as error:  # reported on every page that needs it
        _state["pages_error"] = error
    _state["pages_started"] = started


def _render_order(path: Path, docs: Path) -> tuple:
    """MkDocs' order of the documentation pages: folder by folder, each folder's index first."""
    parts = path.relative_to(docs).parts
    return (parts[:-1], path.stem != "index", parts[-1])


def _page_runs(page_src: str) -> list:
    if "pages_error" in _state:
        log.error("executing the pages failed: %s", _state["pages_error"])
        return []
    return _state["page_runs"].of(page_src)


def _all_page_runs() -> dict:
    """Every session's run, once all are done; the time until then is the build profile's "pages"."""
    if "pages_error" in _state:
        return {}
    runs = _state["page_runs"].all()
    if _state["page_runs"].last_finished is not None:
        _state["profile"]["pages"] = _state["page_runs"].last_finished - _state["pages_started"]
    return runs


# ----------------------------------------------------------------------------- notebooks


def _start_notebooks(docs: Path) -> None:
    """Execute every notebook (or find its cached run) in a thread while the rest builds.

    mkdocs-jupyter then renders the executed, stream-merged copy with its own execution off
    (mkdocs.yml), so a notebook page is the same bytes whatever the kernel's message timing.
    """
    sources = sorted(docs.rglob("*.ipynb"))
    _state["notebooks"] = {}

    def run() -> None:
        for source in sources:
            try:
                _state["notebooks"][source.resolve()] = notebooks.executed_copy(source)
            except Exception as error:  # reported on the notebook's page
                _state["notebooks"][source.resolve()] = error

    _state["notebook_thread"] = _background("notebooks", run)


@event_priority(100)  # before mkdocs-jupyter, so it renders (and caches by content) the executed copy
def on_pre_page(page, config, files):
    if page.file.src_uri.endswith(".ipynb") and page.file.abs_src_path:
        _state["notebook_thread"].join()
        executed = _state["notebooks"].get(Path(page.file.abs_src_path).resolve())
        if isinstance(executed, Path):
            page.file.abs_src_path = str(executed)  # mkdocs-jupyter reads it when the page renders
        else:
            log.error("docs/%s: %s", page.file.src_uri, executed or "the notebook was not executed")
    return page


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
        title = _title(text, file.name)
        for citation in claimsmd.find_citations(text):
            for item_id in [citation.claim_id, *claimsmd.cited_claims(citation)]:  # a derivation cites its claim
                pages = cited_by.setdefault(item_id, [])
                if (title, file.src_uri) not in pages:
                    pages.append((title, file.src_uri))
    _state["cited_by"] = cited_by
    _state["exercises_placed"] = {
        exercise_id: file.src_uri
        for file in files.documentation_pages() if file.src_uri.endswith(".md")
        for exercise_id, _ in exercisesmd.find_markers(Path(file.abs_src_path).read_text(encoding="utf-8"))}

    for site_path, source in mathrender.katex_assets():
        files.append(File.generated(config, site_path, abs_src_path=str(source)))

    # Each chapter with code, as a notebook to download: made from the page's source, values filled in.
    # Registered here; written in on_env, when every page's sessions have run (this does not wait for them).
    _state["notebook_links"], _state["notebook_files"] = {}, {}
    sessions = _state["page_runs"].sessions if "page_runs" in _state else {}
    for file in list(files.documentation_pages()):
        if not file.src_uri.endswith(".md") or not sessions.get(file.src_uri):
            continue
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        if not chapternotebook.has_shown_code(text):
            continue
        stem = Path(file.src_uri).stem
        target = str(Path(file.dest_uri).parent / f"{stem}.ipynb")
        notebook = File.generated(config, target, content="")
        files.append(notebook)
        _state["notebook_links"][file.src_uri] = f"{stem}.ipynb"
        _state["notebook_files"][file.src_uri] = (notebook, text, file.name)

    # Figures are drawn by _start_figures (cached under the package hash); MkDocs copies them after on_env.
    for name in _state["figure_names"]:
        for variant in _state["figures"][name]:
            path = figurejobs.figure_path(name, _state["package_hash"], variant)
            files.append(File.generated(config, f"vis/{name}{variant}.svg", abs_src_path=str(path)))
    return files



def _renderer():
    if "renderer" not in _state:
        _state["renderer"] = mathrender.shared_renderer()
    return _state["renderer"]


def on_page_markdown(markdown, page, config, files):
    src = page.file.src_uri
    runs = _page_runs(src)
    for run in runs:
        if run.error:
            log.error("%s", run.error)
        elif not run.cached:
            log.info("docs/%s: session %s executed in %.1f s", src, run.session, run.seconds)
    if src.endswith(".md"):  # notebooks are checked in their rendered HTML (on_post_page)
        markdown, prose_errors = pageprose.substitute(markdown, runs)
        failed_lines = {error.line for error in prose_errors}  # reported once, not again as a leftover marker
        prose_errors += [error for error in pageprose.leftover_markers(
            markdown, allowed=claimsmd.MARKER_LINES + exercisesmd.MARKER_LINES) if error.line not in failed_lines]
        _state.setdefault("prose_failed", set()).update([src] if prose_errors else [])
        for error in prose_errors:
            log.error("docs/%s:%d: %s", src, error.line, error.message)
    # Before the download link moves the lines, and before the claims: a symbolic answer shows claims.
    markdown, errors = exercisesmd.expand(markdown, src)
    if exercisesmd.INDEX.search(markdown):
        index, index_errors = exercisesmd.index_markdown(_state["exercises_placed"], src)
        markdown = exercisesmd.INDEX.sub(lambda _: index, markdown)
        errors += index_errors
    for error in errors:
        log.error("docs/%s: %s", src, error)
    _state["outputs"].begin_page(src, runs)
    if src in _state.get("notebook_links", {}):
        markdown = _with_download_link(markdown, _state["notebook_links"][src])
    markdown, errors = claimsmd.expand(markdown, src, _renderer())
    for error in errors:
        log.error("docs/%s: %s", src, error)
    for kind, registry_page, placeholder in (("claim", claimsmd.CLAIMS_PAGE, "[[claims-table]]"),
                                             ("derivation", claimsmd.DERIVATIONS_PAGE, "[[derivations-table]]")):
        if page.file.src_uri != registry_page:
            continue
        table, errors = claimsmd.claims_page(_state["cited_by"], _verification_results(), _renderer(), kind)
        for error in errors:
            log.error("docs/%s: %s", page.file.src_uri, error)
        if placeholder not in markdown:
            log.error("docs/%s: the %s placeholder is missing", page.file.src_uri, placeholder)
        markdown = markdown.replace(placeholder, table)
    return markdown


def _with_download_link(markdown: str, href: str) -> str:
    """The page's notebook linked right under its title."""
    link = (f'<p class="page-download"><a href="{href}" download>Download this chapter as a Jupyter notebook</a>: '
            "every code block of the page, hidden ones included, runs in a fresh kernel with the "
            "<code>derivations</code> package installed.</p>")
    lines = markdown.split("\n")
    at = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
    lines.insert(at + 1, "\n" + link + "\n")
    return "\n".join(lines)


def on_post_page(output, page, config):
    _renderer()
    src = page.file.src_uri
    if src.endswith(".ipynb"):  # writes the notebook's shared stylesheet into the site: always run
        source = Path(config.docs_dir, src).read_text(encoding="utf-8")
        output, problems = _finish_page(output, page, config, source)
    else:  # the same HTML, source and figures give the same page: an unchanged page under `mkdocs serve`
        source = Path(page.file.abs_src_path).read_text(encoding="utf-8") if page.file.abs_src_path else None
        key = (output, src, source, _state["package_hash"], _state["figure_names"], src in _state.get("prose_failed", ()))
        output, problems = buildmemo.in_process("finished page", key,
                                                lambda: _finish_page(output, page, config, source))
    for problem in problems:
        log.error("%s", problem)
    return output


def _finish_page(output: str, page, config, source: str | None) -> tuple[str, list[str]]:
    """The built page with its figures, notebook parts and math in place, checked, slimmed; and the
    problems found, each naming the page (``source``: the page's source, for the formulas' lines)."""
    src = page.file.src_uri
    problems: list[str] = []
    # Each figure as its light and dark drawing (and phone layout), opening in the lightbox; here, not
    # in on_page_content, because the figures are drawn while the pages render (on_env waits for them).
    output, errors = figurepage.expand(output, _state["drawings"])
    problems += [f"docs/{src}: {error}" for error in errors]
    if src.endswith(".ipynb"):
        try:
            output = notebookpage.strip_remote_loaders(output)
        except ValueError as error:
            problems.append(f"docs/{src}: {error}")
        output = notebookpage.share_styles(output, config.site_dir, page.url)
        output = notebookpage.with_download_link(output, Path(src).name)
        output, errors = claimsmd.expand_html(output, page.url, renderer=_state["renderer"])
        problems += [f"docs/{src}: {error}" for error in errors]
    output, errors = mathrender.render_page(output, _state["renderer"], source)
    for error in errors:
        where = f"docs/{src}" + (f":{error.line}" if error.line else " (formula not in the source: from a claim?)")
        problems.append(f"{where}: KaTeX cannot render {error.tex!r}: {error.message}")
    if not errors and src not in _state.get("prose_failed", ()):  # else reported already
        problems += [f"docs/{src}: raw TeX or an unexpanded marker would reach readers: ...{snippet}..."
                     for snippet in htmlcheck.raw_source(output)]
    return pageweight.slim(mathrender.compact_styles(output)), problems


@event_priority(-100)  # after the search plugin has written its index
def on_post_build(config):
    index = Path(config.site_dir) / "search" / "search_index.json"
    if index.exists():
        searchtext.rewrite_index(index)
    buildmemo.save()
    _renderer().save()
    results = _verification_results()
    for claim_id, result in results.items():
        if not result["ok"]:
            log.error("claim %s failed SymPy verification: %s", claim_id, result["detail"])
    total = time.perf_counter() - _state["started"]
    runs = _all_page_runs()
    jobs = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in _state["profile"].items())
    sessions = ", ".join(f"{page}[{session}] {run.seconds:.1f} s" for (page, session), run
                         in sorted(runs.items()) if not run.cached)
    log.info("verified_backprop hooks: build finished in %.1f s; background jobs (wall): %s; "
             "sessions executed: %s", total, jobs or "none", sessions or "none (all cached)")


def on_shutdown():
    mathrender.close_shared()
