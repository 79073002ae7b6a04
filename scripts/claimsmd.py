"""Claims on pages: ``[[claim: id]]`` lines become the claim's formula with its proof badge.

The LaTeX comes from ``derivations.symbolic``, so the page, the SymPy proof and
the reference cannot drift apart. ``claims_page`` writes the registry page every
badge links to.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass



def get_claim(claim_id: str):
    # Imported at call time: under `mkdocs serve` the hooks reload the package between builds.
    from derivations.symbolic import get_claim as lookup

    return lookup(claim_id)

CLAIM_LINE = re.compile(r"^(?P<indent>[ \t]*)\[\[claim:\s*(?P<id>[^\]\s]+)\s*\]\]\s*$", re.MULTILINE)
CLAIMS_PAGE = "claims.md"
# Whole-line markers that the hooks expand; anything else written with [[ ]] is an error.
MARKER_LINES = (CLAIM_LINE, re.compile(r"\[\[claims-table\]\]"))


@dataclass(frozen=True)
class Citation:
    claim_id: str
    line: int


def find_citations(markdown: str) -> list[Citation]:
    """Every ``[[claim: id]]`` line of a page, with its 1-based line number."""
    return [Citation(m.group("id"), markdown.count("\n", 0, m.start()) + 1) for m in CLAIM_LINE.finditer(markdown)]


def anchor(claim_id: str) -> str:
    """The claims page anchor of a claim: ids are dotted, anchors use dashes."""
    return "claim-" + re.sub(r"[^a-z0-9]+", "-", claim_id.lower()).strip("-")


def relative_link(page_src: str, target: str = CLAIMS_PAGE) -> str:
    """Markdown link from ``page_src`` (docs-relative) to ``target``."""
    return posixpath.relpath(target, posixpath.dirname(page_src) or ".")


def expand(markdown: str, page_src: str) -> tuple[str, list[str]]:
    """Replace each claim line by its display formula and badge.

    Returns the new Markdown and a list of errors (``"line N: unknown claim id ..."``).
    """
    errors: list[str] = []
    link = relative_link(page_src)

    def replace(match: re.Match) -> str:
        claim_id, indent = match.group("id"), match.group("indent")
        line = markdown.count("\n", 0, match.start()) + 1
        try:
            claim = get_claim(claim_id)
        except KeyError as error:
            errors.append(f"line {line}: {error.args[0]}")
            return match.group(0)
        block = (
            f'<div class="claim" markdown>\n\n\\[\n{claim.latex}\n\\]\n\n'
            f'<span class="claim-badge">[SymPy-proven: {claim.sizes}]({link}#{anchor(claim_id)} "{claim.title}")'
            f" · `{claim_id}`</span>\n\n</div>"
        )
        return "\n".join(indent + row if row else row for row in block.splitlines())

    return CLAIM_LINE.sub(replace, markdown), errors


def claims_page(cited_by: dict[str, list[tuple[str, str]]], results: dict[str, dict] | None) -> str:
    """Markdown for the registry: one section per claim, in registry order.

    ``cited_by`` maps a claim id to ``(page title, page src)`` pairs; ``results`` maps
    an id to its verification result (``ok``, ``seconds``, ``detail``) from this build.
    """
    from derivations.symbolic import CLAIMS

    rows = []
    for claim in CLAIMS:
        pages = cited_by.get(claim.id, [])
        links = ", ".join(f"[{title}]({relative_link(CLAIMS_PAGE, src)})" for title, src in pages) or "no page"
        result = (results or {}).get(claim.id)
        if result is None:
            status = "not verified in this build"
        elif result["ok"]:
            # No timing here: two builds of the same source must give the same page.
            status = f"verified by SymPy for this version of the claims ({result['cases']} identities decided)"
        else:
            status = f"**FAILED**: {result['detail']}"
        rows.append(
            f"### {claim.title} {{#{anchor(claim.id)}}}\n\n"
            f"\\[\n{claim.latex}\n\\]\n\n"
            f"- id: `{claim.id}`\n- proven for: {claim.sizes}\n- result: {status}\n- cited by: {links}\n"
        )
    return "\n".join(rows)


# ----------------------------------------------------------------------------- notebooks
# mkdocs-jupyter renders notebooks without the Markdown hooks, so a claim line in a
# notebook's Markdown cell arrives as <p>[[claim: id]]</p> in the page's HTML.

CLAIM_PARAGRAPH = re.compile(r"<p>\s*\[\[claim:\s*(?P<id>[^\]\s<]+)\s*\]\]\s*</p>")


def notebook_markdown(text: str) -> str:
    """The Markdown cells of a notebook (its JSON text), one after another."""
    import json

    cells = json.loads(text).get("cells", [])
    return "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells if c["cell_type"] == "markdown"
    )


def expand_html(page_html: str, page_url: str, claims_url: str = "claims/") -> tuple[str, list[str]]:
    """Replace claim paragraphs of a rendered notebook by the claim's formula and badge."""
    errors: list[str] = []
    link = posixpath.relpath(claims_url, page_url or ".") + "/"

    def replace(match: re.Match) -> str:
        claim_id = match.group("id")
        try:
            claim = get_claim(claim_id)
        except KeyError as error:
            errors.append(error.args[0])
            return match.group(0)
        return (
            f'<div class="claim"><div class="arithmatex">\\[{html_escape(claim.latex)}\\]</div>'
            f'<p><span class="claim-badge"><a href="{link}#{anchor(claim_id)}" title="{html_escape(claim.title)}">'
            f"SymPy-proven: {html_escape(claim.sizes)}</a> · <code>{claim_id}</code></span></p></div>"
        )

    return CLAIM_PARAGRAPH.sub(replace, page_html), errors


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
