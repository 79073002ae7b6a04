"""The backward-walkthrough notebook: stored without outputs, every cell runs, every check agrees,
a wrong formula is caught, and the page builds with its math rendered by KaTeX.

The site executes the notebook at build time (mkdocs-jupyter, ``execute: true``), so the outputs a
reader sees are always from the build; these tests run it the same way, with nbclient, to name the
cell that fails.
"""

from __future__ import annotations

import copy
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import notebooks
from claimsmd import find_citations
from conftest import DOCS, ROOT
from mathrender import DOLLAR_MATH
from derivations.reference.model import TransformerConfig

pytestmark = pytest.mark.xdist_group("notebook")  # one worker runs the notebook once for all of these

NOTEBOOK = DOCS / "notebooks" / "backward-walkthrough.ipynb"
# The model the page walks through: one block, exact GELU, the model module's post-norm layout, and
# learned position embeddings as in the notebook's source model.
CONFIG = TransformerConfig(vocab_size=6, d_model=16, n_heads=2, d_ff=64, n_layers=1, seq_len=5,
                           norm="post", activation="gelu", positions="learned")
CELL_TIMEOUT = 60  # seconds per cell; the whole notebook computes in well under one
TOLERANCE = 1e-8  # hand-made gradient vs reference: float64 rounding only (the notebook asserts 1e-10)
FD_TOLERANCE = 1e-6  # central differences are good to about 1e-9 on the entries the notebook picks

# What the check cells print (``check`` and the finite-difference loop in the notebook).
CHECK_LINE = re.compile(r"^(?P<name>\S.*?)\s+\((?:\d+(?:, )?)*,?\)\s+relative error (?P<error>\S+)$", re.MULTILINE)
FD_LINE = re.compile(r"^(?P<name>\S+)\s+entries \[[\d, ]+\]\s+finite-difference error (?P<error>\S+)$", re.MULTILINE)
# The delimiters the build renders in notebook Markdown (scripts/mathrender.py).


def first_line(cell) -> str:
    return cell.source.strip().splitlines()[0] if cell.source.strip() else "<empty>"


def run(nb, kernel=None) -> tuple[int | None, str, float]:
    """Execute ``nb`` in place, cell by cell; return (index of the failing cell or None, error, seconds).

    In a fresh kernel, or in the running ``kernel`` (a kernel manager and its connected client) after
    clearing its namespace (``%reset -f``): then the cells see only what they define, as in a fresh one."""
    km, kc = kernel or (None, None)
    if kc is not None:
        reply = kc.execute_interactive("%reset -f", timeout=CELL_TIMEOUT, output_hook=lambda message: None)
        assert reply["content"]["status"] == "ok", reply["content"]
    client = NotebookClient(nb, km=km, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.kc = kc
    with client.setup_kernel():
        start = time.perf_counter()
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except CellExecutionError as error:
                return index, f"{error.ename}: {error.evalue}", time.perf_counter() - start
        return None, "", time.perf_counter() - start


def text_of(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.get("output_type") == "stream")


@pytest.fixture(scope="module")
def executed():
    """The notebook as the build executes it (scripts/notebooks.py), run here afresh."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.perf_counter()
    try:
        notebooks.execute(nb, NOTEBOOK.parent)
    except notebooks.NotebookError as error:
        pytest.fail(f"{NOTEBOOK.relative_to(ROOT)}: {error}", pytrace=False)
    return nb, time.perf_counter() - start


def printed(nb) -> str:
    return "\n".join(text_of(cell) for cell in nb.cells if cell.cell_type == "code")


# ----------------------------------------------------------------------------- the stored file


def test_stored_without_outputs() -> None:
    """Only the build's own run may put outputs on the page."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"cell {index} ({first_line(cell)!r}) is stored with outputs: clear them before committing"
            )
    assert nb.metadata.kernelspec.name == "python3"


# ----------------------------------------------------------------------------- running it


def split_streams(nb):
    """A copy of ``nb`` whose every stream output arrives in two messages, cut mid-line, as a busy
    kernel may deliver one ``print``."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            if out.get("output_type") == "stream" and len(text) > 1:
                cut = len(text) // 2
                outputs += [nbformat.from_dict({**out, "text": text[:cut]}),
                            nbformat.from_dict({**out, "text": text[cut:]})]
            else:
                outputs.append(out)
        if cell.cell_type == "code":
            cell.outputs = outputs
    return nb


def rendered(nb) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(copy.deepcopy(nb))
    return body


def test_page_does_not_depend_on_how_the_kernel_splits_output(executed) -> None:
    """A kernel on a busy machine may deliver one ``print`` as several stream messages. The build
    merges them (scripts/notebooks.py), so the rendered page is the same however they arrived."""
    nb, _ = executed
    pieces = split_streams(nb)
    streams = sum(out.get("output_type") == "stream" for cell in pieces.cells for out in cell.get("outputs", []))
    assert streams > sum(out.get("output_type") == "stream" for cell in nb.cells for out in cell.get("outputs", []))
    assert rendered(notebooks.normalise(pieces)) == rendered(nb)
    assert nbformat.writes(notebooks.normalise(pieces)) == nbformat.writes(nb)


def test_two_executions_give_the_same_bytes(executed) -> None:
    """No timestamps, no execution-order noise: the executed copy the build renders (and readers
    download) is byte-identical from run to run."""
    nb, _ = executed
    again = notebooks.execute(nbformat.read(NOTEBOOK, as_version=4), NOTEBOOK.parent)
    assert nbformat.writes(again) == nbformat.writes(nb)


def test_every_hand_made_gradient_agrees(executed) -> None:
    nb, _ = executed
    checks = [(m["name"], float(m["error"])) for m in CHECK_LINE.finditer(printed(nb))]
    assert len(checks) >= 30, f"only {len(checks)} checks printed: {checks}"
    bad = [(name, error) for name, error in checks if not error < TOLERANCE]
    assert not bad, f"hand-made gradients that disagree with the reference: {bad}"


def test_the_notebook_walks_through_the_intended_model(executed) -> None:
    nb, _ = executed
    assert repr(CONFIG) in printed(nb), f"the notebook does not print {CONFIG!r}"


def test_every_parameter_is_compared_with_the_model_and_finite_differences(executed) -> None:
    from derivations.reference.model import param_shapes

    nb, _ = executed
    text = printed(nb)
    names = set(param_shapes(CONFIG))
    compared = {m["name"] for m in CHECK_LINE.finditer(text)}
    assert names <= compared, f"parameters never compared with loss_and_grads: {sorted(names - compared)}"
    differences = {m["name"]: float(m["error"]) for m in FD_LINE.finditer(text)}
    assert set(differences) == names, f"finite differences cover {sorted(differences)}, not {sorted(names)}"
    bad = {name: error for name, error in differences.items() if not error < FD_TOLERANCE}
    assert not bad, f"gradients that disagree with finite differences: {bad}"


def test_parameter_count_is_printed(executed) -> None:
    from derivations.reference.model import count_params, init_params

    nb, _ = executed
    total = re.search(r"^total\s+(\d+)$", printed(nb), re.MULTILINE)
    assert total and int(total[1]) == count_params(init_params(CONFIG))


# ----------------------------------------------------------------------------- a wrong formula fails


# (cell source to change, wrong version, the check that must fail): typical slips in a backward pass.
WRONG_FORMULAS = {
    "GELU derivative without z phi(z)": ("dz = du * (Phi + z * phi)", "dz = du * Phi", "dZ"),
    "LayerNorm without gamma": ("g = dy * gamma", "g = dy", "dR_2"),  # caught because gamma != 1 there
    "attention without the 1/sqrt(d_head) scale": (
        "dQ = dS @ K / math.sqrt(d_head)", "dQ = dS @ K", "dW_Q"),
    "embedding gradient by buffered indexing (repeated tokens lost)": (
        "dE = one_hot.T @ rows(dx0)", "dE = np.zeros_like(params['embed']); dE[tokens] += dx0", "dE"),
    "position gradient of the first sentence only (the batch sum forgotten)": (
        "dE_pos[:T] = dx0.sum(axis=0)", "dE_pos[:T] = dx0[0]", "dE_pos"),
    "position gradient averaged over the batch (the loss's mean already divided by B)": (
        "dE_pos[:T] = dx0.sum(axis=0)", "dE_pos[:T] = dx0.mean(axis=0)", "dE_pos"),
}


@pytest.fixture(scope="module")
def kernel():
    """One kernel for the wrong-formula runs, reset before each (see ``run``): starting a kernel
    costs about as much as running the whole notebook."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(NOTEBOOK.parent))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=CELL_TIMEOUT)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_reset_kernel_keeps_nothing_of_the_previous_run(kernel) -> None:
    """The control for sharing a kernel: a name the previous run defined is gone after the reset."""
    defines = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("leftover = 1")])
    assert run(defines, kernel)[0] is None
    uses = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(leftover)")])
    failed, error, _ = run(uses, kernel)
    assert failed == 0 and error.startswith("NameError"), error


@pytest.mark.parametrize("mistake", list(WRONG_FORMULAS))
def test_a_wrong_formula_is_caught(mistake: str, kernel) -> None:
    right, wrong, check_name = WRONG_FORMULAS[mistake]
    nb = nbformat.read(NOTEBOOK, as_version=4)
    cells = [cell for cell in nb.cells if cell.cell_type == "code" and right in cell.source]
    assert len(cells) == 1, f"the notebook no longer contains {right!r}: update WRONG_FORMULAS"
    cells[0].source = cells[0].source.replace(right, wrong)
    failed, error, _ = run(nb, kernel)
    assert failed is not None, f"{mistake}: the notebook ran to the end"
    assert error.startswith("AssertionError"), f"{mistake}: failed with {error}, not a check"
    errors = {m["name"]: float(m["error"]) for m in CHECK_LINE.finditer(text_of(nb.cells[failed]))}
    assert errors.get(check_name, 0.0) > TOLERANCE, f"{mistake}: {check_name} printed {errors}"


# ----------------------------------------------------------------------------- the page


class VisibleText(HTMLParser):
    """The text of a page a reader sees (table of contents included), without KaTeX's hidden TeX."""

    SKIP = {"annotation", "script", "style", "title"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []  # (tag, inside an element whose text is skipped)
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag not in self.VOID:
            skipped = self.stack[-1][1] if self.stack else False
            self.stack.append((tag, skipped or tag in self.SKIP))

    def handle_endtag(self, tag) -> None:
        if any(open_tag == tag for open_tag, _ in self.stack):
            while self.stack.pop()[0] != tag:
                pass

    def handle_data(self, data) -> None:
        if not (self.stack and self.stack[-1][1]):
            self.text.append(data)


def test_page_builds_with_rendered_math(built_site: Path) -> None:
    """The notebook's page in the site's own strict build (shared by the test run's workers): a
    formula KaTeX cannot render fails that build, so here: every formula rendered, no traceback."""
    page = built_site / "notebooks" / "backward-walkthrough" / "index.html"
    html = page.read_text(encoding="utf-8")
    assert "katex-error" not in html and "Traceback" not in html

    nb = nbformat.read(NOTEBOOK, as_version=4)
    markdown = [cell.source for cell in nb.cells if cell.cell_type == "markdown"]
    # Each $..$ formula, plus one display formula per [[claim: id]] line (expanded by the hooks).
    formulas = sum(len(DOLLAR_MATH.findall(text)) + len(find_citations(text)) for text in markdown)
    rendered = html.count('<span class="katex">')
    assert rendered == formulas, (
        f"{formulas} formulas in the notebook's Markdown, {rendered} rendered by KaTeX"
        + (" (does scripts/mathrender.py's NOTEBOOK_MARKDOWN match nbconvert's "
           '<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown ...">?)' if rendered == 0 else "")
    )

    reader = VisibleText()
    reader.feed(html)
    text = "".join(reader.text)
    assert "Backward pass walkthrough" in text and "relative error" in text
    at = text.find("$")
    assert at < 0, f"raw $ math left on the page: {text[max(at - 80, 0):at + 80]!r}"

    # The outputs on the page are this build's: the checks and the count are there.
    assert html.count("relative error") >= 30 and "finite-difference error" in html
    assert re.search(r"\btotal\s+\d+", html)
