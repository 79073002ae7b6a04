"""Claims on pages: ``[[claim: id]]`` and ``[[derivation: id]]`` lines become the formula SymPy
proved, printed from the proven expression, with a badge saying what was proven.

``claims_page`` writes the registry page every badge links to. A formula KaTeX rejects is
reported naming the claim, since the page's source does not contain it.
"""

from __future__ import annotations

import html
import posixpath
import re
from dataclasses import dataclass


def _registry():
    # The printed registry, stored per version of derivations/symbolic (claimsnapshot): a build
    # does not import SymPy, and under `mkdocs serve` a changed claim gives a new snapshot.
    import claimsnapshot

    return claimsnapshot.snapshot()


def get_claim(claim_id: str):
    return _registry().get_claim(claim_id)


def get_derivation(derivation_id: str):
    return _registry().get_derivation(derivation_id)


MARKER = re.compile(r"^(?P<indent>[ \t]*)\[\[(?P<kind>claim|derivation):\s*(?P<id>[^\]\s]+)\s*\]\]\s*$", re.MULTILINE)
CLAIM_LINE = MARKER  # the old name, for callers that import it
CLAIMS_PAGE = "claims.md"
DERIVATIONS_PAGE = "derivations.md"  # a page of its own: both on one page made it too heavy
# Whole-line markers that the hooks expand; anything else written with [[ ]] is an error.
MARKER_LINES = (CLAIM_LINE, re.compile(r"\[\[(claims|derivations)-table\]\]"))


def page_of(kind: str) -> str:
    """The registry page that lists items of ``kind`` (``"claim"`` or ``"derivation"``)."""
    return DERIVATIONS_PAGE if kind == "derivation" else CLAIMS_PAGE


@dataclass(frozen=True)
class Citation:
    claim_id: str  # the id of a claim or of a derivation
    line: int
    kind: str = "claim"


def find_citations(markdown: str) -> list[Citation]:
    """Every ``[[claim: id]]`` and ``[[derivation: id]]`` line of a page, with its 1-based line number."""
    return [Citation(m.group("id"), markdown.count("\n", 0, m.start()) + 1, m.group("kind"))
            for m in MARKER.finditer(markdown)]


def cited_claims(citation: Citation) -> list[str]:
    """The claim ids a citation stands for: a derivation cites the claim it concludes."""
    if citation.kind == "claim":
        return [citation.claim_id]
    try:
        concludes = get_derivation(citation.claim_id).concludes
    except KeyError:
        return []
    return [concludes] if concludes else []


def anchor(item_id: str, kind: str = "claim") -> str:
    """The claims page anchor of a claim or derivation: ids are dotted, anchors use dashes."""
    return f"{kind}-" + re.sub(r"[^a-z0-9]+", "-", item_id.lower()).strip("-")


def relative_link(page_src: str, target: str = CLAIMS_PAGE) -> str:
    """Markdown link from ``page_src`` (docs-relative) to ``target``."""
    return posixpath.relpath(target, posixpath.dirname(page_src) or ".")


def lookup(kind: str, item_id: str):
    return get_claim(item_id) if kind == "claim" else get_derivation(item_id)


def badge_text(item) -> str:
    """What the badge says: "SymPy: proven for all sizes", "... every step proven at every size up to 3 ..."."""
    what = "every step proven" if getattr(item, "is_derivation", hasattr(item, "steps")) else "proven"
    return f"SymPy: {what} {item.sizes}"


def badge_title(item) -> str:
    """The badge's tooltip: what this kind of proof means, then the title."""
    return f"{item.title}. {_registry().KINDS[item.kind]}"


def check_formula(item, renderer) -> str | None:
    """KaTeX's message if it cannot render the item's printed formula, else None."""
    if renderer is None:
        return None
    return renderer.render(item.latex, True).get("error")


def expand(markdown: str, page_src: str, renderer=None) -> tuple[str, list[str]]:
    """Replace each marker line by its display formula and badge.

    Returns the new Markdown and a list of errors (``"line N: unknown claim id ..."``,
    ``"line N: KaTeX cannot render the formula of claim X: ..."``). With a ``renderer``
    (``mathrender.KatexRenderer``) every formula is checked as it is placed.
    """
    errors: list[str] = []

    def replace(match: re.Match) -> str:
        kind, item_id, indent = match.group("kind"), match.group("id"), match.group("indent")
        link = relative_link(page_src, page_of(kind))
        line = markdown.count("\n", 0, match.start()) + 1
        try:
            item = lookup(kind, item_id)
        except KeyError as error:
            errors.append(f"line {line}: {error.args[0]}")
            return match.group(0)
        problem = check_formula(item, renderer)
        if problem:
            errors.append(f"line {line}: KaTeX cannot render the formula of {kind} {item_id}: {problem}")
        title = badge_title(item).replace('"', "'")
        block = (
            f'<div class="claim" markdown>\n\n\\[\n{item.latex}\n\\]\n\n'
            f'<span class="claim-badge">[{badge_text(item)}]({link}#{anchor(item_id, kind)} "{title}")'
            f" · `{item_id}`</span>\n\n</div>"
        )
        return "\n".join(indent + row if row else row for row in block.splitlines())

    return MARKER.sub(replace, markdown), errors


def _implementation(claim) -> str:
    if claim.impl:
        function, _, output = claim.impl.partition(":")
        return f"`{function.split()[0]}`" + (f" ({output.strip()})" if output else "")
    return f"none: {claim.no_impl}"


def claims_page(cited_by: dict[str, list[tuple[str, str]]], results: dict[str, dict] | None,
                renderer=None, kind: str = "claim") -> tuple[str, list[str]]:
    """Markdown for the registry page of ``kind``: one section per claim (or per derivation), in
    registry order.

    ``cited_by`` maps an id to ``(page title, page src)`` pairs; ``results`` maps an id to its
    verification result (``ok``, ``cases``, ``detail``) from this build. Returns the Markdown
    and the errors (a formula KaTeX rejects, named by id).
    """
    registry = _registry()
    errors: list[str] = []
    sections = []

    def status(item_id: str, kind: str) -> str:
        result = (results or {}).get(item_id)
        if result is None:
            return "not verified in this build"
        if not result["ok"]:
            return f"**FAILED**: {result['detail']}"
        # No timing here: two builds of the same source must give the same page.
        how = f"{result['cases']} identities decided" if result["cases"] else result["detail"]
        if kind == "derivation":
            return f"every step proven by SymPy for this version of the claims ({how})"
        return f"verified by SymPy for this version of the claims ({how})"

    def pages(item_id: str) -> str:
        return ", ".join(f"[{title}]({relative_link(page_of(kind), src)})"
                         for title, src in cited_by.get(item_id, [])) or "no page"

    if kind not in ("claim", "derivation"):
        raise ValueError(f"claims_page: kind must be 'claim' or 'derivation', not {kind!r}")
    for items in (registry.CLAIMS if kind == "claim" else registry.DERIVATIONS,):
        for item in items:
            problem = check_formula(item, renderer)
            if problem:
                errors.append(f"KaTeX cannot render the formula of {kind} {item.id}: {problem}")
            lines = [f"### {item.title} {{#{anchor(item.id, kind)}}}", "", f"\\[\n{item.latex}\n\\]", "",
                     f"- id: `{item.id}`", f"- proven: {item.sizes} ({item.kind})"]
            if kind == "claim":
                lines.append(f"- implemented by: {_implementation(item)}")
            elif item.concludes:
                claims = relative_link(DERIVATIONS_PAGE, CLAIMS_PAGE)
                lines.append(f"- concludes: [`{item.concludes}`]({claims}#{anchor(item.concludes)})")
            lines += [f"- result: {status(item.id, kind)}", f"- cited by: {pages(item.id)}", ""]
            sections.append("\n".join(lines))
    return "\n".join(sections), errors


# ----------------------------------------------------------------------------- notebooks
# mkdocs-jupyter renders notebooks without the Markdown hooks, so a marker line in a
# notebook's Markdown cell arrives as <p>[[claim: id]]</p> in the page's HTML.

MARKER_PARAGRAPH = re.compile(r"<p>\s*\[\[(?P<kind>claim|derivation):\s*(?P<id>[^\]\s<]+)\s*\]\]\s*</p>")
CLAIM_PARAGRAPH = MARKER_PARAGRAPH


def notebook_markdown(text: str) -> str:
    """The Markdown cells of a notebook (its JSON text), one after another."""
    import json

    cells = json.loads(text).get("cells", [])
    return "\n".join(
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells if c["cell_type"] == "markdown"
    )


def expand_html(page_html: str, page_url: str, claims_url: str = "claims/", renderer=None) -> tuple[str, list[str]]:
    """Replace marker paragraphs of a rendered notebook by the formula and badge."""
    errors: list[str] = []

    def replace(match: re.Match) -> str:
        kind, item_id = match.group("kind"), match.group("id")
        url = claims_url if kind == "claim" else DERIVATIONS_PAGE.removesuffix(".md") + "/"
        link = posixpath.relpath(url, page_url or ".") + "/"
        try:
            item = lookup(kind, item_id)
        except KeyError as error:
            errors.append(error.args[0])
            return match.group(0)
        problem = check_formula(item, renderer)
        if problem:
            errors.append(f"KaTeX cannot render the formula of {kind} {item_id}: {problem}")
        # Spans in a paragraph, no div: the notebook's Markdown cell is found up to its first </div>
        # when its $...$ math is rendered, and text after the claim must stay inside it.
        return (
            f'<p class="claim"><span class="arithmatex">\\[{html_escape(item.latex)}\\]</span>'
            f'<span class="claim-badge"><a href="{link}#{anchor(item_id, kind)}" title="{html_escape(badge_title(item))}">'
            f"{html_escape(badge_text(item))}</a> · <code>{item_id}</code></span></p>"
        )

    return MARKER_PARAGRAPH.sub(replace, page_html), errors


def html_escape(text: str) -> str:
    return html.escape(text, quote=True)
