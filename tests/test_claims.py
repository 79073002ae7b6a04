"""The claims registry: every claim is proven, the checker rejects wrong claims, pages cite claims."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace

import pytest
import sympy as sp

from claimsmd import find_citations, notebook_markdown
from claimsrecord import ensure_verified
from conftest import DOCS
from derivations.symbolic import CLAIMS, IndexIdentity, VJPIdentity, get_claim
from derivations.symbolic import attention as att
from derivations.symbolic.registry import grid_points
from derivations.symbolic.verify import verify_claim
from mathrender import KatexRenderer

IDS = [c.id for c in CLAIMS]


@pytest.fixture(scope="session")
def verification() -> dict[str, dict]:
    """Every claim proven once per version of the claims (shared with the build, see claimsrecord)."""
    results, _ = ensure_verified()
    return results


@pytest.mark.parametrize("claim_id", IDS)
def test_claim_is_proven(verification, claim_id: str) -> None:
    result = verification[claim_id]
    assert result["ok"], result["detail"]
    assert result["cases"] >= 1


def test_verify_command_prints_a_row_per_claim_and_the_total() -> None:
    cheap = ["attention.scores.dQ", "softmax.jacobian", "attention.vjp.dA"]
    run = subprocess.run([sys.executable, "-m", "derivations", "verify", "--workers", "1", *cheap],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == "3 claims verified, 0 failed"
    for claim_id in cheap:
        assert any(line.startswith(claim_id) and "verified" in line for line in lines)


def test_verify_command_fails_on_a_wrong_claim(monkeypatch, capsys) -> None:
    from derivations import __main__ as cli
    from derivations.symbolic import verify as verify_module

    claim = get_claim("attention.vjp.dA")
    wrong = replace(claim, check=_map_claimed(claim.check, lambda g: g.T))
    monkeypatch.setattr(verify_module, "get_claim", lambda claim_id: wrong)
    assert cli.main(["verify", "--workers", "1", "attention.vjp.dA"]) == 1
    out = capsys.readouterr().out
    assert "FAILED differs at" in out and out.strip().endswith("0 claims verified, 1 failed")


# ----------------------------------------------------------------------------- wrong claims must fail


def _map_claimed(check, change):
    """A copy of ``check`` whose claimed value goes through ``change`` (per matrix of a VJP dict)."""
    original = check.claimed

    def claimed(*args, **kwargs):
        value = original(*args, **kwargs)
        if isinstance(value, dict):
            return {name: change(sp.Matrix(grad)) for name, grad in value.items()}
        return change(value)

    return replace(check, claimed=claimed)


def _transpose(value):
    if isinstance(value, sp.MatrixBase):
        return value.T
    # Index claims: swap the derivative's free indices m and n, the index-notation transpose.
    return sp.sympify(value).xreplace({att.m: att.n, att.n: att.m})


GENERIC = {
    "scaled by 2": lambda v: 2 * v,
    "transposed": _transpose,
    "one entry shifted": lambda v: v + sp.Matrix(*v.shape, lambda r, c: int(r == c == 0))
    if isinstance(v, sp.MatrixBase)
    else v + sp.Rational(1, 7),
}


def _has_orientation(claim) -> bool:
    """Whether transposing the claimed value means anything: matrices and index claims, not scalars."""
    if isinstance(claim.check, (IndexIdentity, VJPIdentity)):
        return True
    first = grid_points(claim.check.grid)[0] if claim.check.grid else {}
    return isinstance(claim.check.claimed(**first), sp.MatrixBase)


CASES = [(i, m) for i in IDS for m in GENERIC if m != "transposed" or _has_orientation(get_claim(i))]


@pytest.mark.parametrize(("claim_id", "mutation"), CASES)
def test_checker_rejects_generic_mistakes(claim_id: str, mutation: str) -> None:
    claim = get_claim(claim_id)
    wrong = replace(claim, check=_map_claimed(claim.check, GENERIC[mutation]))
    result = verify_claim(wrong)
    assert not result.ok, f"{claim_id} {mutation} was accepted"
    assert "differs at" in result.detail  # the report names the case and entry


def _dropped_rowsum(G, S):
    A = att.softmax_rows(S)
    return {"S": A.multiply_elementwise(G)}


SPECIFIC = {
    "softmax.vjp": ("row-sum term dropped", lambda check: replace(check, claimed=_dropped_rowsum)),
    "softmax.jacobian": (
        "A^{in} term dropped",
        lambda check: replace(
            check,
            claimed=lambda: sp.KroneckerDelta(att.i, att.m) * sp.KroneckerDelta(att.j, att.n)
            * sp.exp(att.S[att.i, att.j]) / sp.Sum(sp.exp(att.S[att.i, att.k]), (att.k, 0, att.n_k - 1)),
        ),
    ),
    "attention.causal.zero-gradient": (
        "mask ignored in the backward pass",
        lambda check: replace(check, claimed=lambda G, S: {"S": att.softmax_vjp(att.softmax_rows(S), G)}),
    ),
    "attention.rowsum-identity": (
        "upstream gradient forgotten",
        lambda check: replace(
            check,
            claimed=lambda n_q, n_k, d_v: att.rowsum(att.symbol_matrix("A", n_q, n_k) * att.symbol_matrix("V", n_k, d_v)),
        ),
    ),
}


def _dq_without_scale(G, Q, K, V):
    A, _ = att.attention_forward(Q, K, V)
    return {"Q": att.softmax_vjp(A, G * V.T) * K}


def _dk_without_scale(G, Q, K, V):
    A, _ = att.attention_forward(Q, K, V)
    return {"K": att.softmax_vjp(A, G * V.T).T * Q}


def _dv_from_scores(G, Q, K, V):
    scores = Q * K.T / sp.sqrt(Q.cols)  # the pre-softmax scores instead of the weights
    return {"V": scores.T * G}


SPECIFIC["attention.vjp.dQ"] = ("1/sqrt(d_k) missing", lambda check: replace(check, claimed=_dq_without_scale))
SPECIFIC["attention.vjp.dK"] = ("1/sqrt(d_k) missing", lambda check: replace(check, claimed=_dk_without_scale))
SPECIFIC["attention.vjp.dV"] = ("scores used instead of weights", lambda check: replace(check, claimed=_dv_from_scores))


@pytest.mark.parametrize("claim_id", sorted(SPECIFIC))
def test_checker_rejects_classic_mistakes(claim_id: str) -> None:
    claim = get_claim(claim_id)
    description, make_wrong = SPECIFIC[claim_id]
    result = verify_claim(replace(claim, check=make_wrong(claim.check)))
    assert not result.ok, f"{claim_id} with {description} was accepted"


def test_out_of_range_guard_is_not_discharged() -> None:
    """The Piecewise guard is only discharged for in-range indices: an identity that needs more fails."""
    n_k, j, n = att.n_k, att.j, att.n
    wrong = IndexIdentity(
        actual=lambda: sp.Sum(sp.KroneckerDelta(j, n) * att.V[j, 0], (j, 0, n_k - 1)),
        claimed=lambda: att.V[n, 0],
        ranges={},  # n's range is not declared, so the guard n < n_k cannot be discharged
    )
    claim = replace(get_claim("attention.output.dA"), check=wrong)
    assert not verify_claim(claim).ok


# ----------------------------------------------------------------------------- pages and claims


def _citations():
    """Claim citations of every page: Markdown pages and the notebooks' Markdown cells."""
    found = {}
    for page in sorted([*DOCS.rglob("*.md"), *DOCS.rglob("*.ipynb")]):
        text = page.read_text(encoding="utf-8")
        if page.suffix == ".ipynb":
            text = notebook_markdown(text)
        found[page.relative_to(DOCS).as_posix()] = find_citations(text)
    return found


def test_every_cited_claim_exists() -> None:
    unknown = [f"docs/{page}:{c.line}: {c.claim_id}" for page, cs in _citations().items() for c in cs
               if c.claim_id not in IDS]
    assert not unknown, "pages cite unknown claims:\n" + "\n".join(unknown)


def test_every_claim_is_cited_by_a_page() -> None:
    cited = {c.claim_id for cs in _citations().values() for c in cs}
    assert not [i for i in IDS if i not in cited], "claims no page cites"


def test_claim_ids_are_well_formed() -> None:
    for claim in CLAIMS:
        assert re.fullmatch(r"[a-z0-9-]+(\.[a-zA-Z0-9-]+)+", claim.id), claim.id


def test_every_claim_formula_renders_in_katex() -> None:
    with KatexRenderer() as katex:
        failures = {c.id: katex.render(c.latex, True).get("error") for c in CLAIMS}
    assert not {k: v for k, v in failures.items() if v}


def test_katex_rejects_what_it_cannot_parse() -> None:
    with KatexRenderer() as katex:
        assert "error" in katex.render(r"\frac{1}{", True)
        assert "error" in katex.render(r"\mbox{x}", False)  # MathJax-only: must be \text
        assert "html" in katex.render(r"\delta^{i}_{m} A^{ij}", False)
