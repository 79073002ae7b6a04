"""The claims registry: every claim and derivation is proven, wrong variants of every claimed
expression are rejected, the page shows the expression that was proven, pages cite claims.

A wrong formula cannot reach a page: the page prints the claim's expression, and every
mutation of that expression below (scaled, sign flipped, transposed, a term or factor
dropped, an index swapped, the scale removed) makes the checker fail.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import pytest
import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement, MatrixExpr

import claimsmd
from claimsmd import find_citations, notebook_markdown
from claimsrecord import ensure_verified
from conftest import DOCS
from derivations.symbolic import CLAIMS, DERIVATIONS, attention as att, flow, get_claim, get_derivation, layers
from derivations.symbolic.notation import RowSum, Softmax, Step, grad, i, j, k, m, matrix, n, size
from derivations.symbolic.printer import latex
from derivations.symbolic.registry import Claim, Op
from derivations.symbolic.verify import verify_claim
from mathrender import KatexRenderer

# One worker runs the claims' tests: the proof engine keeps each op's meanings (proof.meaning_of), and
# test_claims_extra uses the same ones; spread over two workers, each would build them all again.
pytestmark = pytest.mark.xdist_group("claims")

IDS = [c.id for c in CLAIMS]
DERIVATION_IDS = [d.id for d in DERIVATIONS]


@pytest.fixture(scope="session")
def verification() -> dict[str, dict]:
    """Every claim proven once per version of the claims (shared with the build, see claimsrecord)."""
    results, _ = ensure_verified()
    return results


@pytest.mark.parametrize("item_id", IDS + DERIVATION_IDS)
def test_claim_is_proven(verification, item_id: str) -> None:
    result = verification[item_id]
    assert result["ok"], result["detail"]
    assert result["cases"] >= 1 or "proven by the derivation" in result["detail"]


def test_verify_command_prints_a_row_per_item_and_the_total() -> None:
    cheap = ["attention.scores.dQ", "softmax.jacobian", "attention.vjp.dA", "softmax.quotient-rule"]
    run = subprocess.run([sys.executable, "-m", "derivations", "verify", "--workers", "1", *cheap],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == "4 verified, 0 failed"
    for item_id in cheap:
        assert any(line.startswith(item_id) and "verified" in line for line in lines)


def test_verify_command_fails_on_a_wrong_claim(monkeypatch, capsys) -> None:
    from derivations import __main__ as cli
    from derivations.symbolic import verify as verify_module

    claim = get_claim("attention.vjp.dA")
    wrong = replace(claim, rhs=2 * att.dO * att.V.T)
    monkeypatch.setattr(verify_module, "get_item", lambda item_id: wrong)
    assert cli.main(["verify", "--workers", "1", "attention.vjp.dA"]) == 1
    out = capsys.readouterr().out
    assert "FAILED differs at" in out and out.strip().endswith("0 verified, 1 failed")


# ----------------------------------------------------------------------------- wrong expressions must fail


def _nodes(expr):
    """The printed parts of an expression: not the shapes of matrices nor the bounds of sums (the
    page writes every sum over a whole range; test_a_sum_over_the_wrong_range_is_rejected covers them)."""
    yield expr
    if isinstance(expr, (sp.MatrixSymbol, Step)):
        return
    args = (expr.function,) if isinstance(expr, sp.Sum) else getattr(expr, "args", ())
    for arg in args:
        if isinstance(arg, sp.Basic):
            yield from _nodes(arg)


def _free_indices(claim) -> list:
    lhs = claim.steps[0] if hasattr(claim, "steps") else claim.lhs
    lhs = lhs.args[0] if isinstance(lhs, sp.Tuple) else lhs
    found = [x for x in getattr(lhs, "free_symbols", set()) if x in (i, j, k, m, n, att.a, att.b, layers.t, layers.v)]
    return sorted(found, key=str)


def _is_constant(factor) -> bool:
    from derivations.symbolic.notation import SIZE_WORDS

    return factor != 1 and (factor.is_number or factor.free_symbols <= set(SIZE_WORDS)) and not factor.atoms(MatrixElement)


def mutations(claim, expr) -> dict[str, object]:
    """Wrong variants of one claimed expression, by name, each as a function that builds it
    (building may fail: a transpose dropped from a matrix product breaks its shapes)."""
    out: dict[str, object] = {"scaled by 2": lambda: 2 * expr, "sign flipped": lambda: -expr}
    if isinstance(expr, MatrixExpr):
        out["transposed"] = lambda: expr.T
    free = _free_indices(claim)
    if len(free) >= 2:
        out[f"indices {free[0]} and {free[-1]} swapped"] = lambda: expr.xreplace({free[0]: free[-1], free[-1]: free[0]})
    for node in sorted(set(_nodes(expr)), key=sp.default_sort_key):
        if isinstance(node, (sp.Add, sp.MatAdd)) and len(node.args) > 1:
            for term in node.args:
                rest = [t for t in node.args if t != term]
                out[f"term {latex(term)} dropped"] = lambda node=node, rest=rest: expr.xreplace({node: node.func(*rest)})
        if isinstance(node, (sp.Mul, sp.MatMul)) and len(node.args) > 1:
            for factor in node.args:
                rest = [f for f in node.args if f != factor]
                kind = "scale" if _is_constant(factor) else "factor"
                out[f"{kind} {latex(factor)} removed"] = lambda node=node, rest=rest: expr.xreplace({node: node.func(*rest)})
        if isinstance(node, sp.Transpose):
            out[f"transpose of {latex(node.arg)} dropped"] = lambda node=node: expr.xreplace({node: node.arg})
        if isinstance(node, MatrixElement) and node.i != node.j and not (node.i.is_Integer or node.j.is_Integer):
            out[f"indices of {latex(node)} swapped"] = lambda node=node: expr.xreplace({node: node.parent[node.j, node.i]})
    return out


def _variants(claim):
    """Every mutation of the claim's expression (of each part of a tuple, of each ``where`` definition),
    as ``(name, build)``: ``build()`` returns the wrong claim."""
    if isinstance(claim.rhs, sp.Tuple):
        for position, part in enumerate(claim.rhs.args):
            for name, variant in mutations(claim, part).items():
                yield f"part {position}: {name}", lambda v=variant, p=position: replace(
                    claim, rhs=sp.Tuple(*[v() if q == p else x for q, x in enumerate(claim.rhs.args)]))
    else:
        for name, variant in mutations(claim, claim.rhs).items():
            yield name, lambda v=variant: replace(claim, rhs=v())
    for position, (pattern, definition) in enumerate(claim.where):
        for name, variant in mutations(claim, definition).items():
            if name.startswith(("scaled", "sign", "term", "factor", "transpose")):
                def build(v=variant, position=position, pattern=pattern):
                    where = list(claim.where)
                    where[position] = (pattern, v())
                    return replace(claim, where=tuple(where))
                yield f"where {latex(pattern)}: {name}", build


def _same(claim, wrong) -> bool:
    """Whether a mutation left the expression as it was (SymPy keeps a delta's indices in a fixed
    order, so swapping them changes nothing)."""
    return (wrong.rhs, wrong.where) == (claim.rhs, claim.where)


def _identical(claim, build) -> bool:
    try:
        return _same(claim, build())
    except (ValueError, TypeError, sp.matrices.ShapeError):
        return False


# A mutation that leaves the expression as it was (scaling a part that is 0, swapping the indices of
# a symmetric term) cannot be rejected, and is not a test: it is set aside here, at collection, and
# test_identical_variants_are_only_zero_scalings_and_symmetric_swaps says which they are.
_BUILDS = {claim.id: dict(_variants(claim)) for claim in CLAIMS}  # naming a variant prints it: once
_ALL = [(claim_id, name, _identical(get_claim(claim_id), build)) for claim_id, builds in _BUILDS.items()
        for name, build in builds.items()]
MUTATIONS = [(claim_id, name) for claim_id, name, identical in _ALL if not identical]
IDENTICAL = [(claim_id, name) for claim_id, name, identical in _ALL if identical]


@pytest.mark.parametrize(("claim_id", "mutation"), MUTATIONS)
def test_checker_rejects_a_wrong_expression(claim_id: str, mutation: str) -> None:
    claim = get_claim(claim_id)
    make = _BUILDS[claim_id][mutation]
    try:
        wrong = make()
    except (ValueError, TypeError, sp.matrices.ShapeError):  # the expression cannot even be built: rejected
        return
    if (claim_id, mutation) in STILL_TRUE:
        assert verify_claim(wrong).ok, "listed as still true, but rejected: remove it from STILL_TRUE"
        return
    result = verify_claim(wrong)
    assert not result.ok, f"{claim_id}: {mutation} was accepted"
    assert result.detail.startswith("differs at") or _shape_error(result.detail), result.detail
    assert wrong.latex != claim.latex, "a changed expression must change what the page shows"


def _shape_error(detail: str) -> bool:
    """A rejection because the wrong formula does not even fit the shapes (not a crash of the checker)."""
    return bool(re.search(r"ShapeError|shapes differ|runs over two different sizes|indices out of range", detail))




ZERO_CLAIMS = ["attention.causal.zero-gradient"]  # the claimed value is 0: scaling it changes nothing


def test_there_are_many_mutations() -> None:
    assert len(MUTATIONS) > 300
    assert {claim_id for claim_id, _ in MUTATIONS} | set(ZERO_CLAIMS) == set(IDS)


@pytest.mark.parametrize("claim_id", ZERO_CLAIMS)
def test_a_claimed_zero_is_rejected_when_it_is_not_zero(claim_id: str) -> None:
    """A claim that a gradient is exactly 0 has no scaled or sign-flipped variant; instead, claiming
    a non-zero value there (a constant, or the upstream gradient passed straight through, as if the
    mask did not block it) must be rejected."""
    claim = get_claim(claim_id)
    for wrong_value in (sp.Integer(1), att.grad(att.A_c)[claim.lhs.i, claim.lhs.j]):
        result = verify_claim(replace(claim, rhs=wrong_value))
        assert not result.ok, f"{claim_id}: claiming {wrong_value} was accepted"


def test_identical_variants_are_only_zero_scalings_and_symmetric_swaps() -> None:
    assert len(IDENTICAL) < 0.05 * len(_ALL)
    for claim_id, name in IDENTICAL:
        claim = get_claim(claim_id)
        if "swapped" in name:
            continue  # equal after the swap: the term is symmetric in those indices
        assert name.split(": ")[-1] in ("scaled by 2", "sign flipped"), (claim_id, name)
        part = claim.rhs.args[int(name.split()[1].rstrip(":"))] if name.startswith("part ") else claim.rhs
        assert part == 0 or getattr(part, "is_zero_matrix", False), f"{claim_id}: {name} left a non-zero part unchanged"


DERIVATION_MUTATIONS = [(d.id, step) for d in DERIVATIONS for step in range(1, len(d.steps))]


@pytest.mark.parametrize(("derivation_id", "step"), DERIVATION_MUTATIONS)
def test_checker_rejects_a_wrong_step(derivation_id: str, step: int) -> None:
    derivation = get_derivation(derivation_id)
    for name in ("scaled by 2", "sign flipped"):
        steps = list(derivation.steps)
        steps[step] = mutations(derivation, steps[step])[name]()
        result = verify_claim(replace(derivation, steps=tuple(steps)))
        assert not result.ok and result.detail.startswith("differs at"), f"{derivation_id} step {step}: {name}: {result}"


def test_a_sum_over_the_wrong_range_is_rejected() -> None:
    claim = get_claim("softmax.vjp")
    for top in (att.n_k, att.n_k - 2):  # one term too many, one too few
        wrong = claim.rhs.xreplace({limit: (limit[0], limit[1], top) for s in claim.rhs.atoms(sp.Sum) for limit in s.limits})
        assert wrong != claim.rhs and not verify_claim(replace(claim, rhs=wrong)).ok


# Mutations that leave a true statement: the checker is right to accept them.
STILL_TRUE = {  # Phi and Phi - 1/2 have the same derivative, and these claims only use Phi' = phi
    (claim_id, r"where \Phi\left(x\right): term 1 dropped") for claim_id in ("gelu.vjp", "gelu.exact-derivative")
}


def _classic(claim_id, **changes):
    return verify_claim(replace(get_claim(claim_id), **changes))


def test_classic_mistakes_are_rejected() -> None:
    odot = sp.HadamardProduct
    S_scores = att.Q * att.K.T / sp.sqrt(att.d_k)
    assert not _classic("attention.vjp.dV", rhs=S_scores.T * att.dO).ok  # scores instead of weights
    assert not _classic("softmax.vjp-rowsum", rhs=odot(att.A, att.dA)).ok  # softmax taken entrywise
    unmasked = Softmax(att.S_c)  # the mask forgotten in the backward pass
    assert not _classic("attention.causal.vjp", rhs=odot(unmasked, grad(att.A_c) - RowSum(odot(unmasked, grad(att.A_c))))).ok
    assert not _classic("rnn.step.vjp", where=((grad(flow.a_t), grad(flow.h_t)),)).ok  # tanh's slope forgotten
    reversed_chain = flow.Ordered(Step("J", flow.l, flow.width, flow.width), flow.l, 1, flow.depth)
    assert not _classic("chain-rule.jacobian-product", rhs=reversed_chain).ok  # J_1 ... J_D
    assert not _classic("clip.preserves-direction", rhs=sp.Tuple(0, flow.c_max * flow.Norm(flow.gv),
                                                                  flow.c_max**2)).ok  # no guard
    assert not _classic("attention.score-variance", rhs=sp.Tuple(0, att.d_k**2)).ok
    assert not _classic("init.relu-halves", rhs=sp.Tuple(flow.sigma**2, sp.Rational(1, 2))).ok


def test_out_of_range_delta_is_not_collapsed() -> None:
    """A delta collapses a sum only when its index is known to lie in the sum's range."""
    wide = size("n_wide", "columns of a test matrix")
    V = matrix("V_test", wide, 1)
    op = Op("test: a delta whose index may lie outside the sum")
    narrow = sp.Sum(sp.KroneckerDelta(j, n) * V[j, 0], (j, 0, att.n_k - 1))  # n's range is not the sum's
    claim = Claim("test.delta", "test", op, V[n, 0], narrow, no_impl="a test")
    assert not verify_claim(claim).ok


# ----------------------------------------------------------------------------- the page shows what is proven


def test_page_shows_the_printed_expression() -> None:
    claim = get_claim("attention.vjp.dV")
    page, errors = claimsmd.expand("# P\n\n[[claim: attention.vjp.dV]]\n", "page.md")
    assert not errors and claim.latex in page
    wrong = replace(claim, rhs=att.dO.T * att.A).latex  # a wrong formula prints differently
    assert wrong != claim.latex and wrong not in page


def test_printer_writes_the_site_notation() -> None:
    Q, K, A, dO, dS = att.Q, att.K, att.A, att.dO, att.dS
    assert latex(sp.KroneckerDelta(i, m)) == r"\delta^{i}_{m}"
    assert latex(Q[i, att.a]) == "Q^{ia}"
    assert latex(sp.Derivative(att.S[i, j], Q[m, n])) == r"\frac{\partial S^{ij}}{\partial Q^{mn}}"
    assert latex(dO) == r"\frac{\partial L}{\partial O}" and latex(dO[i, m]) == r"\frac{\partial L}{\partial O^{im}}"
    assert latex(A.T * dO) == r"A^{\top} \frac{\partial L}{\partial O}"
    assert latex(dS.T * Q) == r"\left(\frac{\partial L}{\partial S}\right)^{\top} Q"
    assert latex(sp.HadamardProduct(A, RowSum(A))) == r"A \odot \operatorname{rowsum}\left(A\right)"
    assert latex(sp.KroneckerDelta(i, m) * K[j, n] / sp.sqrt(att.d_k)) == r"\frac{1}{\sqrt{d_{k}}} \delta^{i}_{m} K^{jn}"
    assert latex(layers.bias[0, n]) == "b^{n}"  # a row vector shows one index


def test_badges_say_in_words_what_was_proven() -> None:
    for item in [*CLAIMS, *DERIVATIONS]:
        text, tooltip = claimsmd.badge_text(item), claimsmd.badge_title(item)
        assert "proven" in text and not re.search(r"[A-Za-z]_[A-Za-z]", text + tooltip), f"{item.id}: {text!r}"
        assert item.kind in ("general", "grid", "every-real")
        assert item.sizes.startswith(("for all sizes", "at every size up to", "for every")), item.sizes
        if item.kind == "grid":
            assert re.search(r"up to \d", item.sizes)
    assert get_claim("softmax.jacobian").sizes == "for all sizes"
    assert get_claim("relu.derivative").sizes == "for every real x ≠ 0"
    assert get_claim("chain-rule.contraction").sizes == "at every size up to 3 in each dimension"


def test_grids_start_at_one_and_have_no_gaps() -> None:
    with pytest.raises(ValueError, match="1, 2, ..., N"):
        Op("bad", grid={att.n_q: (2, 3)})


def test_sizes_cannot_mean_two_things() -> None:
    with pytest.raises(ValueError, match="already means"):
        size("n_q", "something else")


# ----------------------------------------------------------------------------- pages and claims


def _citations():
    """Citations of every page: Markdown pages and the notebooks' Markdown cells."""
    found = {}
    for page in sorted([*DOCS.rglob("*.md"), *DOCS.rglob("*.ipynb")]):
        text = page.read_text(encoding="utf-8")
        if page.suffix == ".ipynb":
            text = notebook_markdown(text)
        found[page.relative_to(DOCS).as_posix()] = find_citations(text)
    return found


def test_every_cited_claim_exists() -> None:
    known = {"claim": set(IDS), "derivation": set(DERIVATION_IDS)}
    unknown = [f"docs/{page}:{c.line}: {c.kind} {c.claim_id}" for page, cs in _citations().items() for c in cs
               if c.claim_id not in known[c.kind]]
    assert not unknown, "pages cite unknown ids:\n" + "\n".join(unknown)


def test_every_claim_and_derivation_is_cited_by_a_page() -> None:
    citations = [c for cs in _citations().values() for c in cs]
    cited = {item for c in citations for item in [c.claim_id, *claimsmd.cited_claims(c)]}
    assert not [i for i in IDS + DERIVATION_IDS if i not in cited], "not cited by any page"


def test_ids_are_well_formed() -> None:
    for item in [*CLAIMS, *DERIVATIONS]:
        assert re.fullmatch(r"[a-z0-9-]+(\.[a-zA-Z0-9-]+)+", item.id), item.id


def test_every_formula_renders_in_katex() -> None:
    with KatexRenderer() as katex:
        failures = {item.id: katex.render(item.latex, True).get("error") for item in [*CLAIMS, *DERIVATIONS]}
    assert not {k: v for k, v in failures.items() if v}


def test_a_formula_katex_rejects_is_reported_with_its_id(monkeypatch) -> None:
    claim = get_claim("softmax.jacobian")

    class Broken:
        id, title, kind, sizes, latex = claim.id, claim.title, claim.kind, claim.sizes, r"\frac{1}{"

    monkeypatch.setattr(claimsmd, "lookup", lambda kind, item_id: Broken)
    with KatexRenderer() as katex:
        _, errors = claimsmd.expand("# P\n\n[[claim: softmax.jacobian]]\n", "page.md", katex)
    assert errors and "line 3" in errors[0] and "claim softmax.jacobian" in errors[0]


def test_katex_rejects_what_it_cannot_parse() -> None:
    with KatexRenderer() as katex:
        assert "error" in katex.render(r"\frac{1}{", True)
        assert "error" in katex.render(r"\mbox{x}", False)  # MathJax-only: must be \text
        assert "html" in katex.render(r"\delta^{i}_{m} A^{ij}", False)
