"""No unproven gradient formula on any page: every display formula that states a derivative
comes from a claim or a derivation marker.

The scan reads the sources: ``\\[ ... \\]`` in the Markdown pages (outside code blocks) and
``$$ ... $$`` in the notebooks' Markdown cells. A formula containing a derivative (a partial
or total derivative, a gradient name such as ``dX``, a Jacobian ``J``) must be replaced by
``[[claim: id]]`` or ``[[derivation: id]]``, whose formula is printed from the expression
SymPy proved. Forward definitions and notation may stay typed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import DOCS

DISPLAY_MD = re.compile(r"\\\[(.*?)\\\]", re.DOTALL)
DISPLAY_NOTEBOOK = re.compile(r"\$\$(.*?)\$\$", re.DOTALL)
FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,}).*?^\1\2[ \t]*$", re.DOTALL | re.MULTILINE)
DERIVATIVE = re.compile(
    r"\\partial"                       # a partial derivative, a gradient dL/dX
    r"|\\frac\s*\{\s*d\s*\}"           # d/dx
    r"|\\frac\s*\{\s*d\s*[A-Za-z\\]"   # dy/dx
    r"|(?<![A-Za-z\\])d[A-Z]\w*"       # a gradient's code name: dX, dW_q
    r"|(?<![A-Za-z\\])J(?:_|\^|\b)"    # a Jacobian J, J_l, J^{mn}
    r"|\\mathbf\{J\}|\\nabla"
)


def display_formulas(text: str, pattern: re.Pattern) -> list[tuple[int, str]]:
    """``(line, tex)`` of every display formula of ``text``, code blocks left out."""
    blanked = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)  # keep the line numbers
    return [(blanked.count("\n", 0, m.start()) + 1, m.group(1)) for m in pattern.finditer(blanked)]


def offenders(text: str, pattern: re.Pattern) -> list[tuple[int, str]]:
    return [(line, " ".join(tex.split())) for line, tex in display_formulas(text, pattern) if DERIVATIVE.search(tex)]


def notebook_cells(path: Path):
    """``(first line of the cell in the notebook's file, Markdown text)`` of every Markdown cell."""
    raw = path.read_text(encoding="utf-8")
    for cell in json.loads(raw)["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            anchor = raw.find(json.dumps(cell["id"]))
            yield raw.count("\n", 0, max(anchor, 0)) + 1, source


def test_no_typed_derivative_in_a_display_formula() -> None:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for line, tex in offenders(page.read_text(encoding="utf-8"), DISPLAY_MD):
            found.append(f"docs/{page.relative_to(DOCS).as_posix()}:{line}: {tex[:100]}")
    for notebook in sorted(DOCS.rglob("*.ipynb")):
        for cell_line, source in notebook_cells(notebook):
            for line, tex in offenders(source, DISPLAY_NOTEBOOK):
                found.append(f"docs/{notebook.relative_to(DOCS).as_posix()}:{cell_line} (cell line {line}): {tex[:100]}")
    assert not found, (
        "display formulas with a derivative typed by hand; cite a claim or a derivation instead "
        "([[claim: id]], [[derivation: id]], see AUTHORING.md):\n" + "\n".join(found))


@pytest.mark.parametrize("tex", [
    r"\frac{\partial L}{\partial V} = A^{\top} \frac{\partial L}{\partial O}",
    r"\frac{d}{dx} \max(x, 0) = H(x)",
    r"\frac{dy}{dx} = 2x",
    r"dV = A^T dO",
    r"J_{l} = W^{\top}",
    r"h_D = J \, h_0",
])
def test_the_scan_sees_a_derivative(tex: str) -> None:
    assert offenders(f"# P\n\n\\[\n{tex}\n\\]\n", DISPLAY_MD) == [(3, " ".join(tex.split()))]


@pytest.mark.parametrize("tex", [
    r"S^{ij} = \frac{1}{\sqrt{d_k}}\, Q^{ia} K^{ja}",
    r"A^{ij} = \frac{\exp S^{ij}}{\sum_{k} \exp S^{ik}}, \qquad O^{ib} = A^{ij} V^{jb}",
    r"\delta^{i}_{m} = \begin{cases} 1 & i = m \\ 0 & i \neq m \end{cases}",
    r"x_0 = E[\text{tokens}] + P, \qquad \tilde{x} = \operatorname{LN}_1\big(x + \operatorname{MHA}(x)\big)",
    r"h_{t} = \tanh\big(x_{t} W_{xh} + h_{t-1} W_{hh} + b\big), \qquad t = 1, \dots, T,",
])
def test_the_scan_lets_definitions_pass(tex: str) -> None:
    assert offenders(f"\\[\n{tex}\n\\]", DISPLAY_MD) == []


def test_the_scan_skips_code_and_reports_lines() -> None:
    text = "# P\n\n```python\nprint('\\\\[ \\\\partial \\\\]')\n```\n\nText.\n\n\\[ \\partial y \\]\n"
    assert offenders(text, DISPLAY_MD) == [(9, r"\partial y")]
    notebook = "Intro\n\n$$\n\\frac{\\partial L}{\\partial h} = 1\n$$\n\n$$ x = 1 $$"
    assert [line for line, _ in offenders(notebook, DISPLAY_NOTEBOOK)] == [3]
