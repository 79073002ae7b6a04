"""The autodiff-engines chapter: its experiment helpers, its claims, and what its framework blocks print.

``tests/test_docs_blocks.py`` already runs the page (through the shared page cache) and requires
every ``{{ check: }}`` to hold. Here: the helpers the page added to the experiments room, against
independent computations; the chapter's claims against classic mistakes the generic mutation tests
do not make (a wrong patch order, a definition in ``where`` changed); and the page's structure:
each framework's tab holds that framework's block, the error messages the prose quotes are the
ones printed, and no output carries an address, a timing or a float32.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import pageexec
from conftest import DOCS, ROOT
from derivations.autodiff import Graph, Var, backward, ops
from derivations.experiments import autodiff as ex
from derivations.reference import unfold_patches, fold_patches
from derivations.symbolic import autodiff as claims_module
from derivations.symbolic import get_claim
from derivations.symbolic.verify import verify_claim
from docblocks import blocks

PAGE = "autodiff-engines.md"
SESSIONS = {"PyTorch": "autodiff-engines-torch", "JAX": "autodiff-engines-jax",
            "TensorFlow": "autodiff-engines-tf", "Our engine": "autodiff-engines"}

# ----------------------------------------------------------------------------- graph_summary


def test_graph_summary_groups_nodes_by_op_with_what_each_saves():
    x = Var([0.5, -1.0, 2.0], requires_grad=True)
    y = ops.tanh(x)  # saves its output: 3 float64 values
    z = x * y  # keeps both inputs, computes nothing to save
    w = ops.tanh(z)  # a second tanh node
    loss = w.sum()
    graph = Graph(loss)
    rows = ex.graph_summary(graph, backward(loss, retain_graph=True))
    assert [row["op"] for row in rows] == ["tanh", "mul", "sum"]  # in order of first appearance
    tanh, mul, total = rows
    assert tanh["nodes"] == [0, 2] and tanh["visits"] == [4, 2]  # four nodes, visited last-created first
    assert tanh["new"] == [("y", (3,))] and tanh["new_bytes"] == 2 * 3 * 8 and tanh["kept"] == []
    assert mul["nodes"] == [1] and mul["visits"] == [3] and mul["new"] == [] and mul["kept"] == ["a", "b"]
    assert total["visits"] == [1] and total["new_bytes"] == 0


def test_graph_summary_of_the_example_accounts_for_every_node():
    from derivations.autodiff import record_transformer
    from derivations.reference.model import TransformerConfig, init_params
    from derivations.reference.task import answer, tokenize

    config = TransformerConfig()
    loss, _, graph = record_transformer(init_params(config), [tokenize("Max(1,6,2)")], [answer("Max(1,6,2)")], config)
    rows = ex.graph_summary(graph, backward(loss, retain_graph=True))
    nodes = sorted(k for row in rows for k in row["nodes"])
    assert nodes == list(range(len(graph.nodes)))
    attention = next(row for row in rows if row["op"] == "multi_head_attention")
    # per layer: Q, K, V [1, 4, 8, 16], A [1, 4, 8, 8] and the merged heads [1, 8, 64], float64
    assert attention["new_bytes"] == config.n_layers * 8 * (3 * 4 * 8 * 16 + 4 * 8 * 8 + 8 * 64)


# ----------------------------------------------------------------------------- forgotten_scale


def _unscaled_attention_by_hand(Q, K, V, dO):
    """Softmax of Q K^T (no scale), its weights and dK, written out here."""
    S = Q @ K.T
    A = np.exp(S - S.max(axis=1, keepdims=True))
    A /= A.sum(axis=1, keepdims=True)
    dA = dO @ V.T
    dS = A * (dA - np.sum(A * dA, axis=1, keepdims=True))
    return A, dS.T @ Q, dS @ K


def test_forgotten_scale_measures_the_unscaled_attention():
    d_k, n, d_v, seed = 16, 5, 3, 7
    result = ex.forgotten_scale(d_k=d_k, n=n, d_v=d_v, seeds=[seed])
    rng = np.random.default_rng(seed)
    Q, K = rng.standard_normal((n, d_k)), rng.standard_normal((n, d_k))
    V, dO = rng.standard_normal((n, d_v)), rng.standard_normal((n, d_v))
    A, dK, dQ = _unscaled_attention_by_hand(Q, K, V, dO)
    A_scaled, dK_scaled, dQ_scaled = _unscaled_attention_by_hand(Q / np.sqrt(d_k), K, V, dO)
    dQ_scaled = dQ_scaled / np.sqrt(d_k)  # the helper differentiates with respect to Q / sqrt(d_k): chain rule
    assert result["largest_weight_unscaled"][0] == pytest.approx(A.max(axis=1).mean(), rel=1e-12)
    assert result["largest_weight"][0] == pytest.approx(A_scaled.max(axis=1).mean(), rel=1e-12)
    assert result["dK_ratio"][0] == pytest.approx(np.linalg.norm(dK) / np.linalg.norm(dK_scaled), rel=1e-10)
    assert result["dQ_ratio"][0] == pytest.approx(np.linalg.norm(dQ) / np.linalg.norm(dQ_scaled), rel=1e-10)
    np.testing.assert_allclose(result["row_ratio"], np.linalg.norm(dQ, axis=1) / np.linalg.norm(dQ_scaled, axis=1),
                               rtol=1e-10)
    assert result["saturated_rows"][0] == np.mean(A.max(axis=1) > 0.99)


def test_with_one_key_feature_the_scale_changes_nothing():
    result = ex.forgotten_scale(d_k=1, seeds=range(3))
    np.testing.assert_allclose(result["dK_ratio"], 1.0, rtol=1e-14)
    np.testing.assert_allclose(result["largest_weight"], result["largest_weight_unscaled"], rtol=1e-14)


def test_forgotten_scale_rejects_bad_sizes():
    with pytest.raises(ValueError, match="d_k = 0"):
        ex.forgotten_scale(d_k=0)
    with pytest.raises(ValueError, match="seed"):
        ex.forgotten_scale(seeds=[])


# ----------------------------------------------------------------------------- the chapter's claims


def _rearrangement(entry):
    """A variant of the claims' unfold whose entries come from ``entry(p, q, C, P, n_h, n_w) -> (c, row, col)``."""

    class Variant(claims_module.Unfold):
        def _entry(self, p, q, **kwargs):
            C, P, n_h, n_w = self.sizes
            return self.pixel(self.args[0], *entry(int(p), int(q), int(C), int(P), int(n_h), int(n_w)))

    return Variant


COLUMN_MAJOR_PATCHES = _rearrangement(  # patches numbered down the columns instead of along the rows
    lambda p, q, C, P, n_h, n_w: (q // (P * P), P * (p % n_h) + (q % (P * P)) // P, P * (p // n_h) + q % P))
CHANNEL_LAST = _rearrangement(  # inside a patch: row, column, then channel (NHWC order)
    lambda p, q, C, P, n_h, n_w: (q % C, P * (p // n_w) + q // (P * C), P * (p % n_w) + (q // C) % P))


@pytest.mark.parametrize("variant", [COLUMN_MAJOR_PATCHES, CHANNEL_LAST], ids=["column-major patches", "channel last"])
def test_the_patch_claims_reject_another_unfolding_order(variant):
    forward = get_claim("patch-embed.conv-as-matmul")
    wrong = replace(forward, rhs=variant(claims_module.images, *claims_module.SIZES) * claims_module.kernel.T)
    assert not verify_claim(wrong).ok
    kernel_gradient = get_claim("patch-embed.vjp.dkernel")
    wrong = replace(kernel_gradient, rhs=claims_module.grad(claims_module.tokens).T
                    * variant(claims_module.images, *claims_module.SIZES))
    assert not verify_claim(wrong).ok


def test_the_claims_unfold_and_fold_are_the_reference_s():
    """The claims' rearrangements, evaluated at numbers, against ``unfold_patches``/``fold_patches``."""
    C, P, n_h, n_w = 2, 3, 2, 4
    image = np.random.default_rng(0).standard_normal((1, C, P * n_h, P * n_w))
    X = sp.ImmutableMatrix(image[0].reshape(C * P * n_h, P * n_w))  # the claims' layout: channels stacked
    unfolded = np.array(claims_module.Unfold(X, C, P, n_h, n_w).as_explicit(), dtype=float)
    np.testing.assert_array_equal(unfolded, unfold_patches(image, P)[0])
    folded = np.array(claims_module.Fold(sp.ImmutableMatrix(unfolded), C, P, n_h, n_w).as_explicit(), dtype=float)
    np.testing.assert_array_equal(folded, fold_patches(unfolded[None], image.shape, P)[0].reshape(X.shape))
    np.testing.assert_array_equal(folded, image[0].reshape(X.shape))


def test_a_rearrangement_of_the_wrong_shape_cannot_be_built():
    with pytest.raises(sp.matrices.ShapeError):
        claims_module.Fold(claims_module.tokens, *claims_module.SIZES)  # [n_h n_w, d], not [n_h n_w, C P^2]


D = sp.Derivative
_z, _y, _i, _j = claims_module.z, claims_module.y, claims_module.i, claims_module.j
WRONG_WHERE = {
    "dy doubled": ("autodiff.tape.reverse-sweep", lambda where: 2 * where),
    "dy without the upstream dz": ("autodiff.tape.reverse-sweep", lambda where: claims_module.Contraction(
        D(_z[0, _i], _y[0, _j]), (_i, 0, claims_module.n_z - 1))),
    "tangent negated": ("autodiff.jvp-vjp-transpose", lambda where: -where),
    "tangent replaced by ones": ("autodiff.jvp-vjp-transpose",
                                 lambda where: where.xreplace({claims_module.xdot: sp.OneMatrix(1, claims_module.n_x)})),
}


@pytest.mark.parametrize("mistake", sorted(WRONG_WHERE))
def test_a_wrong_definition_in_where_is_rejected(mistake):
    """The generic mutation tests skip ``where`` changes of a scalar claim (its right side is unchanged)."""
    claim_id, change = WRONG_WHERE[mistake]
    claim = get_claim(claim_id)
    (pattern, definition), = claim.where
    assert not verify_claim(replace(claim, where=((pattern, change(definition)),))).ok


def test_the_lstm_claim_rejects_a_forgotten_forget_gate():
    claim = get_claim("lstm.vjp.dc")
    without_gate = claim.rhs.args[0] if claim.rhs.args[1] == claims_module.f_g else claim.rhs.args[1]
    assert not verify_claim(replace(claim, rhs=without_gate)).ok


# ----------------------------------------------------------------------------- the page


@pytest.fixture(scope="module")
def page_blocks():
    return [b for b in blocks(DOCS / PAGE, DOCS) if b.executable]


@pytest.fixture(scope="module")
def outputs():
    """``{session: [(line, output)]}`` of the page, from the shared page cache (run once per cache key)."""
    runs = pageexec.run_pages([DOCS / PAGE], DOCS)
    found = {}
    for (page, session), run in runs.items():
        assert run.error is None, run.error
        found[session] = [(b.line, b.output) for b in run.blocks]
    return found


def test_the_page_has_one_session_per_framework_and_one_for_the_engine(page_blocks):
    assert {b.options["session"] for b in page_blocks} == set(SESSIONS.values())


def test_each_framework_tab_holds_that_framework_s_block(page_blocks):
    """Under ``=== "PyTorch"`` only torch code, and so on: a tab never shows another framework's output."""
    lines = (DOCS / PAGE).read_text(encoding="utf-8").split("\n")
    by_line = {b.line: b for b in page_blocks}
    tab, checked = None, 0
    for number, line in enumerate(lines, start=1):
        match = re.match(r'^=== "([^"]+)"', line)
        if match:
            tab = match.group(1)
        elif line and not line.startswith(" "):
            tab = None  # back at the left margin: the tab group is over
        if number + 1 in by_line and tab in SESSIONS:
            assert by_line[number + 1].options["session"] == SESSIONS[tab], f"docs/{PAGE}:{number}: tab {tab}"
            checked += 1
    assert checked >= 40


@pytest.mark.parametrize("session, text", [
    ("autodiff-engines-torch", "RuntimeError: Trying to backward through the graph a second time"),
    ("autodiff-engines-torch", "after zero_grad(): None"),
    ("autodiff-engines-torch", "appears to not have been used in the graph. Set allow_unused=True"),
    ("autodiff-engines-torch", "learned=False: state_dict ['pos'], parameters [], gradient None"),
    ("autodiff-engines-tf", "RuntimeError: A non-persistent GradientTape can only be used to compute one set of gradients"),
    ("autodiff-engines-tf", "persistent: dz/dx = 108.0 dy/dx = 6.0"),
    ("autodiff-engines-tf", "[5.0, None, None]"),
    ("autodiff-engines-jax", "weights: [[0.2689, 0.7311, 0.0], [nan, nan, nan]]"),
    ("autodiff-engines-jax", "softmax(where=allowed): [[0.2689, 0.7311, 0.0], [0.0, 0.0, 0.0]]"),
    ("autodiff-engines", "weights: [[0.2689, 0.7311, 0.0], [0.0, 0.0, 0.0]]"),
    ("autodiff-engines", "RuntimeError: node #"),
])
def test_the_quoted_behaviour_is_what_the_block_printed(outputs, session, text):
    """Long messages are wrapped for the page: compare with the lines joined."""
    assert any(text in " ".join(output.split()) for _, output in outputs[session]), f"{session} never printed {text!r}"


def test_outputs_are_reproducible_text(outputs):
    """No memory address, no object repr with an id, no timing, and float64 wherever numbers are compared."""
    for session, runs in outputs.items():
        for line, output in runs:
            where = f"docs/{PAGE}:{line} ({session})"
            assert not re.search(r"0x[0-9a-fA-F]{6,}| at 0x|<[\w.]+ object", output), where
            assert not re.search(r"\d+(\.\d+)? ?(ms|seconds?|s)\b", output), where
            assert "float32" not in output, where


def test_the_page_is_in_the_navigation_after_gradient_flow():
    from mkdocs.utils.yaml import yaml_load

    with open(ROOT / "mkdocs.yml", encoding="utf-8") as source:
        nav = [next(iter(entry.items())) for entry in yaml_load(source)["nav"]]
    nav = [(label, page) for label, page in nav if isinstance(page, str)]  # not the groups of pages
    pages = [page for _, page in nav]
    assert pages.index(PAGE) == pages.index("gradient-flow.md") + 1
    title = dict((page, label) for label, page in nav)[PAGE]
    assert Path(DOCS / PAGE).read_text(encoding="utf-8").startswith(f"# {title}\n")
