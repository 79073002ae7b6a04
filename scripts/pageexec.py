"""Run the pages' Python blocks: one process per page session, sessions in parallel, results cached.

A page's executable blocks (```` ```python exec="on" session="..." ````) form one or
more *sessions*; the blocks of a session run in order in one namespace, in a fresh
interpreter of their own. What each block printed, and a snapshot of the simple
values it defined (numbers, strings, booleans, small arrays), are stored under a hash
of exactly what the run depends on: the session's code and block options, the
``derivations`` package source and the library versions. So:

- a prose edit re-executes nothing, and an edit to one page re-executes only that
  page's sessions (the rest are read from ``.cache/build/pages``);
- independent sessions run in parallel on all cores;
- the build (through markdown-exec's renderer) and the tests read the same results, and
  a block that raises is reported as ``docs/<page>.md:<line>`` with its traceback.

``python scripts/pageexec.py run <docs> <page.md> <session> <key> <out.pickle>`` is the worker.
Nothing here imports MkDocs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import buildcache  # noqa: E402
from docblocks import Block, blocks  # noqa: E402

ROOT = buildcache.ROOT
DOCS = ROOT / "docs"
MAX_ARRAY = 256  # arrays up to this many entries are kept as values; larger ones are data, not prose
MAX_TEXT = 2000


@dataclass
class BlockRun:
    line: int  # 1-based line of the block's first line of code in the page
    code: str
    output: str  # what the block printed


@dataclass
class SessionRun:
    """The outcome of one session: each block's output, the values after each block, an error."""

    page: str  # docs-relative path
    session: str
    key: str
    blocks: list[BlockRun] = field(default_factory=list)
    # values[k] holds the names block k assigned or changed, with their new values
    values: list[dict[str, object]] = field(default_factory=list)
    error: str | None = None  # "docs/page.md:LINE: traceback" of the block that raised
    error_line: int | None = None
    seconds: float = 0.0
    cached: bool = False

    def value_at(self, name: str, line: int) -> tuple[bool, object]:
        """``name`` as the page stands at ``line``: after the last block above the line, or, if the
        name is first computed further down, its first value. ``(False, None)`` if never set."""
        found, value = False, None
        for run, changed in zip(self.blocks, self.values):
            if run.line > line and found:
                break
            if name in changed:
                found, value = True, changed[name]
                if run.line > line:
                    break
        return found, value


# ----------------------------------------------------------------------------- which sessions


def page_sessions(path: Path, docs: Path = DOCS) -> dict[str, list[Block]]:
    """``{session: its executable blocks in page order}`` for the Markdown page ``path``."""
    found: dict[str, list[Block]] = {}
    for block in blocks(path, docs):
        if block.executable:
            found.setdefault(block.options.get("session", ""), []).append(block)
    return found


def session_key(page: str, session: str, session_blocks: list[Block], package_hash: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"{page}\0{session}\0{package_hash}\0{sys.version}\0".encode())
    digest.update(Path(__file__).read_bytes())  # the executor's own rules
    for block in session_blocks:
        # Not the line: moving a block by editing the prose around it must not re-run it.
        digest.update(f"{sorted(block.options.items())}\0{block.code}\0".encode())
    return digest.hexdigest()[:24]


# ----------------------------------------------------------------------------- the worker


def _exportable(value, depth: int = 0) -> bool:
    import numpy as np

    if type(value) in (bool, int, float, complex) or isinstance(value, np.generic):
        return True
    if isinstance(value, str):
        return len(value) <= MAX_TEXT
    if type(value) is np.ndarray:
        return value.size <= MAX_ARRAY and value.dtype.kind in "biufc"
    # Exact types only: an instance of a class defined in a page could not be read back here.
    if depth < 2 and type(value) in (tuple, list) and len(value) <= MAX_ARRAY:
        return all(_exportable(v, depth + 1) for v in value)
    if depth < 2 and type(value) is dict and len(value) <= MAX_ARRAY:
        return all(isinstance(k, (str, int)) and _exportable(v, depth + 1) for k, v in value.items())
    return False


def _snapshot(namespace: dict) -> dict[str, bytes]:
    """``{name: pickled value}`` of every public, simple value in ``namespace``."""
    out = {}
    for name, value in namespace.items():
        if name.startswith("_") or not _exportable(value):
            continue
        try:
            out[name] = pickle.dumps(value, protocol=5)
        except Exception:  # noqa: BLE001 - an unpicklable value is simply not available to prose
            continue
    return out


def run_session(page: str, session: str, session_blocks: list[Block], key: str = "") -> SessionRun:
    """Execute the blocks in this process, in one namespace; stop at the first that raises.

    Code is compiled with the page's path as its file name, padded so a traceback names
    ``docs/<page>.md`` and the line of the Markdown file.
    """
    import time

    start = time.perf_counter()
    result = SessionRun(page, session, key)
    namespace: dict = {"__name__": "__main__"}
    before: dict[str, bytes] = {}
    for block in session_blocks:
        buffer = io.StringIO()
        try:
            code = compile("\n" * (block.line - 1) + block.code, f"docs/{page}", "exec")
            with contextlib.redirect_stdout(buffer):
                exec(code, namespace)  # noqa: S102 - running the page's code is the point
        except BaseException as error:  # noqa: BLE001 - reported with the page and line
            frames = traceback.extract_tb(error.__traceback__)
            line = next((f.lineno for f in reversed(frames) if f.filename == f"docs/{page}"), block.line)
            # From the page's frame on: the executor's own frame says nothing to an author.
            shown = traceback.format_exception(type(error), error, error.__traceback__.tb_next)
            result.error = f"docs/{page}:{line}: {type(error).__name__}: {error}\n" + "".join(shown[1:])
            result.error_line = line
            result.blocks.append(BlockRun(block.line, block.code, buffer.getvalue()))
            result.values.append({})
            break
        after = _snapshot(namespace)
        changed = {name: pickle.loads(data) for name, data in after.items() if before.get(name) != data}
        before = after
        result.blocks.append(BlockRun(block.line, block.code, buffer.getvalue()))
        result.values.append(changed)
    result.seconds = time.perf_counter() - start
    return result


# ----------------------------------------------------------------------------- cache and parallel runs


def _cache_path(key: str) -> Path:
    return buildcache.path_for("pages", key, ".pickle")


def _run_in_child(docs: Path, page: str, session: str, key: str) -> SessionRun:
    """Run one session in a fresh interpreter (fresh imports, one BLAS thread) and read its result.

    A lock per session key: when a build and a test worker both need the same cold session, one
    runs it and the other reads its result.
    """
    import fcntl

    target = _cache_path(key)
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            run = pickle.loads(target.read_bytes())
            run.cached = True
            return run
        return _execute(docs, page, session, key, target)


def _execute(docs: Path, page: str, session: str, key: str, target: Path) -> SessionRun:
    partial = target.with_suffix(f".{os.getpid()}.partial")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    child = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "run", str(docs), page, session, key, str(partial)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    if child.returncode != 0 or not partial.exists():
        return SessionRun(page, session, key, error=f"docs/{page}: session {session!r} crashed:\n"
                          f"{child.stdout}\n{child.stderr}")
    result = pickle.loads(partial.read_bytes())
    if result.error is None:
        partial.replace(target)  # only complete, successful runs are cached
    else:
        partial.unlink()
    return result


class PageRuns:
    """Every session of ``pages``, read from the cache or executed ``workers`` at a time, each page's
    runs available (:meth:`of`) as soon as that page's sessions are done, so a build can render the
    first pages while the slow sessions of others still run.

    Failures are in the runs, never raised.
    """

    def __init__(self, pages: list[Path], docs: Path = DOCS, workers: int = 2, use_cache: bool = True) -> None:
        package_hash = buildcache.source_hash("derivations")
        self._results: dict[tuple[str, str], SessionRun] = {}
        self._pending: dict[tuple[str, str], object] = {}  # futures of the sessions being executed
        self.sessions: dict[str, list[str]] = {}  # page -> its sessions, in page order
        missing = []
        for path in pages:
            page = path.relative_to(docs).as_posix()
            for session, session_blocks in page_sessions(path, docs).items():
                self.sessions.setdefault(page, []).append(session)
                key = session_key(page, session, session_blocks, package_hash)
                target = _cache_path(key)
                if use_cache and target.exists():
                    run = pickle.loads(target.read_bytes())
                    run.cached = True
                    for block_run, block in zip(run.blocks, session_blocks):
                        block_run.line = block.line  # the same code, perhaps moved by a prose edit
                    self._results[page, session] = run
                else:
                    missing.append((page, session, key))
        self.last_finished: float | None = None  # perf_counter() when the last executed session ended
        if missing:
            pool = ThreadPoolExecutor(max_workers=max(1, workers))
            for page, session, key in missing:
                future = pool.submit(_run_in_child, docs, page, session, key)
                future.add_done_callback(self._finished)
                self._pending[page, session] = future
            pool.shutdown(wait=False)  # the queued sessions still run; the pool takes no more

    def _finished(self, _future) -> None:
        import time

        self.last_finished = time.perf_counter()

    def _collect(self, job: tuple[str, str]) -> SessionRun:
        if job in self._pending:
            try:
                self._results[job] = self._pending.pop(job).result()
            except Exception as error:  # noqa: BLE001 - reported with the page, as a run that failed
                self._results[job] = SessionRun(job[0], job[1], "", error=f"docs/{job[0]}: session {job[1]!r} "
                                                f"could not be run: {type(error).__name__}: {error}")
        return self._results[job]

    def of(self, page: str) -> list[SessionRun]:
        """The runs of ``page``'s sessions (waiting for them), in page order; [] for a page without."""
        return [self._collect((page, session)) for session in self.sessions.get(page, [])]

    def all(self) -> dict[tuple[str, str], SessionRun]:
        """``{(page, session): SessionRun}`` for every session (waiting for all)."""
        return {(page, session): self._collect((page, session))
                for page, sessions in self.sessions.items() for session in sessions}


def run_pages(pages: list[Path], docs: Path = DOCS, workers: int = 2, use_cache: bool = True) -> dict[tuple[str, str], SessionRun]:
    """Every session of ``pages``: read from the cache or executed, ``workers`` at a time.

    Returns ``{(page, session): SessionRun}``; failures are in the runs, never raised.
    """
    return PageRuns(pages, docs, workers, use_cache).all()


def _main(argv: list[str]) -> int:
    if len(argv) != 7 or argv[1] != "run":
        print(__doc__, file=sys.stderr)
        return 2
    _, _, docs, page, session, key, out = argv
    # Through the module, not __main__, so the parent can read the pickled result's classes.
    import pageexec

    found = pageexec.page_sessions(Path(docs) / page, Path(docs)).get(session)
    if found is None:
        print(f"docs/{page}: no session {session!r}", file=sys.stderr)
        return 2
    result = pageexec.run_session(page, session, found, key)
    Path(out).write_bytes(pickle.dumps(result, protocol=5))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))


# ----------------------------------------------------------------------------- serving the outputs


class PageOutputs:
    """Hands markdown-exec the outputs of the executed sessions instead of letting it run the code.

    Registered as markdown-exec's ``python`` formatter (its public ``formatters`` table), so
    markdown-exec still decides how a block looks (source above, tabs, ``result="text"``,
    printed Markdown); only the execution is ours: parallel, cached, reported by page and line.
    """

    def __init__(self) -> None:
        self.page: str | None = None
        self._runs: dict[str, SessionRun] = {}  # the page's runs by session
        self._next: dict[str, int] = {}

    def begin_page(self, page: str, runs: list[SessionRun]) -> None:
        """Called before a page's Markdown is converted, with the runs of its sessions: its blocks
        are served from the start."""
        self.page, self._runs, self._next = page, {run.session: run for run in runs}, {}

    def format(self, **options):
        from markdown_exec import base_format

        return base_format(language="python", run=self._output, **options)

    def _output(self, code: str, returncode: int = 0, session: str | None = None, id: str = "", **extra) -> str:  # noqa: A002
        from markdown_exec import ExecutionError

        run = self._runs.get(session or "")
        if run is None:
            raise ExecutionError(f"docs/{self.page}: session {session!r} was not executed")
        index = self._next.get(run.session, 0)
        self._next[run.session] = index + 1
        if index >= len(run.blocks):
            raise ExecutionError(f"docs/{self.page}: not run, because an earlier block raised:\n{run.error}")
        block = run.blocks[index]
        if block.code.strip() != code.strip():
            raise ExecutionError(f"docs/{self.page}:{block.line}: the executed block differs from the page's")
        if index == len(run.blocks) - 1 and run.error:
            raise ExecutionError(run.error)
        return block.output
