"""The exercises: every stored answer recomputed independently (PyTorch float64, closed forms, central
differences), every worked solution run, the registry's rules enforced, and every entry on a page.

A wrong stored answer, a solution that raises or disagrees, a prompt that names no value, and a
false check in a model answer must each be reported with the exercise's id; the controls build such
broken entries and require exactly that.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import DOCS, ROOT

import exercisesmd
from derivations.exercises import CHAPTERS, EXERCISES, Exercise, get_exercise, is_close
from derivations.exercises.registry import literal
from derivations.exercises.run import problems, run

torch = pytest.importorskip("torch")
torch.set_default_dtype(torch.float64)

BY_ID = {exercise.id: exercise for exercise in EXERCISES}


@pytest.fixture(scope="module")
def outcomes():
    """Every exercise run once, as the build runs them (``exercisesmd.prepare``: in a child process,
    cached under a hash of the package, its data and the runner, so test workers and the build share
    one run). A run where a solution raised is never cached."""
    found = exercisesmd.prepare()
    if "" in found:
        pytest.fail(found[""], pytrace=False)
    assert set(found) == set(BY_ID), "the prepared outcomes are not those of the registry"
    return found


def t(x, grad=False):
    return torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=grad)


# ----------------------------------------------------------------------------- independent answers
# One function per numeric or choice exercise, from its givens, written without the reference
# implementation: PyTorch's autograd and optimisers, exact arithmetic, or the defining formula.


def _scores(Q, K):
    return (t(Q) @ t(K).T / math.sqrt(Q.shape[1])).numpy()


def _jacobian_size(Q, K):
    J = torch.autograd.functional.jacobian(lambda q: q @ t(K).T / math.sqrt(Q.shape[1]), t(Q))
    return {"entries in all": J.numel(), "non-zero entries": int((J != 0).sum())}


def _which_contraction():
    Q, K = torch.randn(2, 3, generator=torch.Generator().manual_seed(1)), torch.randn(4, 3)
    right = []
    for spec in ("ia,ja->ij", "ia,aj->ij", "ai,aj->ij", "ia,ia->i"):
        try:
            right.append(torch.allclose(torch.einsum(spec, Q, K), Q @ K.T))
        except RuntimeError:
            right.append(False)
    return right.index(True)


def _chain(W, g):
    x = t(np.zeros(W.shape[1]), grad=True)
    (t(W) @ x).backward(t(g))
    return x.grad.numpy()


def _softmax_jacobian(x):
    return torch.autograd.functional.jacobian(lambda v: torch.softmax(v, 0), t(x)).numpy()


def _saturation():
    fractions = {}
    for scale in (150.0, 1.5):
        scores = torch.rand(64, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
        J = torch.autograd.functional.jacobian(lambda s: torch.softmax(s, -1), scale * scores)  # [64,16,64,16]
        per_row = torch.stack([J[i, :, i, :].abs().max() for i in range(64)])
        fractions[scale] = float((per_row < 1e-3).double().mean())
    return 0 if fractions[150.0] > 0.5 and fractions[1.5] == 0 else 1


def _score_gradient(A, V, dO):
    S = t(np.log(A), grad=True)
    P = torch.softmax(S, -1)
    P.retain_grad()
    (torch.softmax(S, -1) @ t(V) * t(dO)).sum().backward()
    dA = t(dO) @ t(V).T
    return {r"\(\partial L/\partial A\)": dA.numpy(), r"\(\partial L/\partial S\)": S.grad.numpy()}


def _value_gradient(A, dO):
    V = t(np.zeros((A.shape[1], dO.shape[1])), grad=True)
    (t(A) @ V * t(dO)).sum().backward()
    return V.grad.numpy()


def _torch_attention(X, mask):
    scores = X @ X.T / math.sqrt(X.shape[1])
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ X


def _causal_mask():
    n = 5
    X = torch.randn(n, 4, generator=torch.Generator().manual_seed(3))
    wanted = torch.tril(torch.ones(n, n, dtype=torch.bool))
    candidates = [torch.tril(torch.ones(n, n, dtype=torch.bool)), torch.triu(torch.ones(n, n, dtype=torch.bool)),
                  torch.ones(n, n, dtype=torch.bool), torch.eye(n, dtype=torch.bool)]
    for index, mask in enumerate(candidates):
        J = torch.autograd.functional.jacobian(lambda x: _torch_attention(x, mask), X)  # [n, 4, n, 4]
        depends = J.abs().sum(dim=(1, 3)) > 1e-12
        if torch.equal(depends, wanted):
            return index
    return -1


def _single_token():
    W = [torch.randn(4, 4, generator=torch.Generator().manual_seed(k)).requires_grad_() for k in range(4)]
    X = torch.randn(1, 4)
    Q, K, V = X @ W[0], X @ W[1], X @ W[2]
    heads = [torch.softmax(Q[:, h:h + 2] @ K[:, h:h + 2].T / math.sqrt(2), -1) @ V[:, h:h + 2] for h in (0, 2)]
    (torch.cat(heads, -1) @ W[3]).sum().backward()
    zero = tuple(bool((w.grad == 0).all()) for w in W)
    return {(True, True, False, False): 0}.get(zero, -1)


def _loss_gradient(logits, target):
    z = t(logits, grad=True)
    torch.nn.functional.cross_entropy(z[None], torch.tensor([target])).backward()
    return z.grad.numpy()


def _negative_entry():
    generator = torch.Generator().manual_seed(5)
    for _ in range(200):
        z = (3 * torch.randn(20, generator=generator)).requires_grad_()
        target = int(torch.randint(20, (1,), generator=generator))
        torch.nn.functional.cross_entropy(z[None], torch.tensor([target])).backward()
        if torch.nonzero(z.grad < 0).flatten().tolist() != [target]:
            return 3
    return 0


def _relu(z, upstream):
    x = t(z, grad=True)
    torch.relu(x).backward(t(upstream))
    return x.grad.numpy()


def _finite_difference(expression, entry, h):
    from derivations.reference.model import TransformerConfig, init_params, loss_and_grads
    from derivations.reference.task import encode_example

    # Not the same computation: the analytic gradient of the backward pass, not a difference of losses.
    config = TransformerConfig()
    tokens, target = encode_example(expression)
    return loss_and_grads(init_params(config, 0), tokens[None], [target], config)[1]["W_out"][tuple(entry)]


def _repeated_token(expression, dout):
    from derivations.reference.task import tokenize

    E = t(np.zeros((20, dout.shape[1])), grad=True)
    (torch.nn.functional.embedding(torch.tensor(tokenize(expression)), E) * t(dout)).sum().backward()
    return E.grad[19].numpy()


def _sgd(w, g, lr, goal):
    unit = Fraction(1, 10**6)  # every given is a whole number of millionths
    w_, g_, lr_, goal_ = (Fraction(round(v / float(unit))) * unit for v in (w, g, lr, goal))
    return {"W after one step": float(w_ - lr_ * g_), "steps to reach the goal": math.ceil((goal_ - w_) / (lr_ * -g_))}


def _optimisers(w0, grads, lr):
    finals = {}
    for name, make in (("SGD", lambda p: torch.optim.SGD([p], lr=lr)),
                       ("SGD with momentum 0.9", lambda p: torch.optim.SGD([p], lr=lr, momentum=0.9)),
                       ("Adam", lambda p: torch.optim.Adam([p], lr=lr, betas=(0.9, 0.999), eps=1e-8))):
        p = torch.tensor([w0], requires_grad=True)
        optimizer = make(p)
        for g in grads:
            optimizer.zero_grad()
            p.grad = torch.tensor([g])
            optimizer.step()
        finals[name] = p.item()
    return finals


def _head_independence():
    generator = torch.Generator().manual_seed(2)
    d, heads, n = 8, 2, 5
    X, dout = torch.randn(n, d, generator=generator), torch.randn(n, d, generator=generator)
    W = [torch.randn(d, d, generator=generator) for _ in range(4)]
    moved = W[1].clone()
    moved[:, d // heads:] += torch.randn(d, d // heads, generator=generator)
    blocks = []
    for W_k in (W[1], moved):
        W_q = W[0].clone().requires_grad_()
        Q, K, V = X @ W_q, X @ W_k, X @ W[2]
        size = d // heads
        outs = [torch.softmax(Q[:, h * size:(h + 1) * size] @ K[:, h * size:(h + 1) * size].T / math.sqrt(size), -1)
                @ V[:, h * size:(h + 1) * size] for h in range(heads)]
        (torch.cat(outs, -1) @ W[3]).backward(dout)
        blocks.append(W_q.grad[:, :size].clone())
    return 0 if torch.equal(blocks[0], blocks[1]) else 1


def _residual_chain(depth, branch):
    results = {}
    for name, residual in (("without residual connections", False), ("with residual connections", True)):
        x = torch.tensor(1.0, requires_grad=True)
        y = x
        for _ in range(depth):
            y = y + branch * y if residual else branch * y
        y.backward()
        results[name] = x.grad.item()
    return results


def _clip(g, max_norm):
    p = torch.zeros(len(g), requires_grad=True)
    p.grad = t(g)
    torch.nn.utils.clip_grad_norm_([p], max_norm)
    return p.grad.numpy()


def _attenuation(stages, norms):
    from derivations.reference.model import forward_backward
    from derivations.reference.task import make_split
    from derivations.reference.train import load_or_train

    settings = load_or_train().settings
    train_set, _ = make_split(settings.n_train, settings.n_held_out, settings.data_seed)
    probe = slice(0, settings.probe_size)
    from derivations.reference.model import init_params

    _, _, trace = forward_backward(init_params(settings.config, settings.init_seed), train_set.tokens[probe],
                                   train_set.targets[probe], settings.config, record=True)
    return np.linalg.norm(trace["grads"]["embed.out"]) / np.linalg.norm(trace["grads"]["logits"])


def _accumulate(w):
    x = t(w, grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    return x.grad.numpy()


def _second_backward():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    try:
        loss.backward()
    except RuntimeError:
        return 0
    return 1


def _parameter_count():
    from derivations.reference.model import TransformerConfig

    c = TransformerConfig()
    d, V, F = c.d_model, c.vocab_size, c.d_ff
    block = 4 * d * d + 2 * d + d * F + F + F * d + d + 2 * d
    return {"forward-mode passes": V * d + c.n_layers * block + d * V + V, "reverse-mode passes": 1}


def _positions():
    generator = torch.Generator().manual_seed(4)
    attention = torch.nn.MultiheadAttention(8, 2, bias=False, batch_first=True)
    X = torch.randn(1, 5, 8, generator=generator)
    swapped = X[:, [1, 0, 2, 3, 4]]
    position = torch.arange(5)[:, None] / 10000 ** (torch.arange(0, 8, 2) / 8)
    encoding = torch.stack([torch.sin(position), torch.cos(position)], -1).reshape(5, 8)

    def last(X, variant):
        if variant == "positions":
            X = X + encoding
        out = attention(X, X, X, need_weights=False)[0][0, -1]
        return {"scale": out * math.sqrt(8), "layernorm": torch.nn.functional.layer_norm(out, (8,))}.get(variant, out)

    with torch.no_grad():
        changed = [not torch.allclose(last(X, v), last(swapped, v), atol=1e-12, rtol=0)
                   for v in ("scale", "positions", "heads", "layernorm")]
    return changed.index(True) if sum(changed) == 1 else -1


def _attention_memory(n_from, n_to, d_head):
    memory = lambda n: 3 * n * d_head + n * n  # noqa: E731  entries of Q, K, V and A
    return {"memory factor": memory(n_to) / memory(n_from), "FLOPs factor": (n_to / n_from) ** 2}


def _hand_backward(x, W1, b1, W2, b2, target):
    tensors = [t(v, grad=True) for v in (W1, b1, W2, b2)]
    z = t(x) @ tensors[0] + tensors[1]
    z.retain_grad()
    hidden = torch.relu(z)
    hidden.retain_grad()
    output = hidden @ tensors[2] + tensors[3]
    output.retain_grad()
    (0.5 * ((output - t(target)) ** 2).sum()).backward()
    return {r"\(\partial L/\partial\,\text{output}\)": output.grad.numpy(), r"\(\partial L/\partial W_2\)": tensors[2].grad.numpy(),
            r"\(\partial L/\partial b_2\)": tensors[3].grad.numpy(), r"\(\partial L/\partial\,\text{hidden}\)": hidden.grad.numpy(),
            r"\(\partial L/\partial W_1\)": tensors[0].grad.numpy(), r"\(\partial L/\partial b_1\)": tensors[1].grad.numpy()}


def _why_perturb():
    generator = torch.Generator().manual_seed(6)
    X, W1 = torch.randn(4, 3, generator=generator), torch.randn(3, 5, generator=generator)
    errors = []
    for b1 in (torch.zeros(5), 0.1 * torch.randn(5, generator=generator)):
        derivative = []
        for argument in (X @ W1 + b1, X @ W1):
            z = argument.clone().requires_grad_()
            torch.nn.functional.gelu(z).sum().backward()
            derivative.append(z.grad)
        errors.append(float((derivative[0] - derivative[1]).abs().max()))
    return 0 if errors[0] == 0 and errors[1] > 1e-3 else 1


INDEPENDENT = {
    "notation.scores-by-hand": _scores,
    "notation.delta-picks": lambda K, n: [K[j][n] for j in range(len(K))],
    "notation.jacobian-size": _jacobian_size,
    "notation.which-contraction": _which_contraction,
    "notation.chain-rule": _chain,
    "attention.it-weights": lambda dots, d_k: torch.softmax(t(dots) / math.sqrt(d_k), 0).numpy(),
    "attention.softmax-jacobian": _softmax_jacobian,
    "attention.saturation": _saturation,
    "attention.score-gradient": _score_gradient,
    "attention.value-gradient": _value_gradient,
    "attention.causal-mask": _causal_mask,
    "attention.single-token": _single_token,
    "transformer.loss-gradient": _loss_gradient,
    "transformer.negative-entry": _negative_entry,
    "transformer.small-loss": lambda loss, vocab: {"probability of the target": math.exp(-loss),
                                                   "gradient of its logit": math.exp(-loss) - 1},
    "transformer.output-column": lambda final_repr, column, upstream: [v * upstream for v in final_repr],
    "transformer.relu-backward": _relu,
    "transformer.finite-difference": _finite_difference,
    "transformer.repeated-token": _repeated_token,
    "transformer.sgd-steps": _sgd,
    "transformer.optimisers": _optimisers,
    "transformer.head-independence": _head_independence,
    "flow.residual-chain": _residual_chain,
    "flow.clip": _clip,
    "flow.learning-rates": lambda w0, target, lrs, steps: {f"lr = {lr}": target + (w0 - target) * (1 - lr) ** steps
                                                           for lr in lrs},
    "flow.attenuation": _attenuation,
    "autodiff.accumulate": _accumulate,
    "autodiff.second-backward": _second_backward,
    "autodiff.forward-or-reverse": lambda: _parameter_count(),
    "autodiff.positions": _positions,
    "autodiff.attention-memory": _attention_memory,
    "walkthrough.hand-backward": _hand_backward,
    "walkthrough.why-perturb": _why_perturb,
}

# How closely the independent answer must agree: the exercise's own tolerance would hide a small bug.
AGREE = {"rtol": 1e-7, "atol": 1e-10}
LOOSER = {  # independent answers computed from different (rounded or differenced) data
    "transformer.finite-difference": {"rtol": 1e-6, "atol": 1e-12},  # a central difference against the backward pass
    "flow.attenuation": {"rtol": 5e-3, "atol": 0.0},  # the givens are the measured norms to 3 digits
}


def test_every_checked_answer_has_an_independent_recomputation() -> None:
    checked = {e.id for e in EXERCISES if e.kind in ("numeric", "choice")}
    assert checked == set(INDEPENDENT), (f"missing: {sorted(checked - set(INDEPENDENT))}, "
                                         f"stale: {sorted(set(INDEPENDENT) - checked)}")


@pytest.mark.parametrize("exercise_id", sorted(INDEPENDENT))
def test_stored_answer_agrees_with_an_independent_computation(exercise_id: str, outcomes) -> None:
    exercise, outcome = BY_ID[exercise_id], outcomes[exercise_id]
    assert outcome.error is None, outcome.error
    expected = INDEPENDENT[exercise_id](**outcome.givens)
    if exercise.kind == "choice":
        assert outcome.answer == expected, f"{exercise_id}: stored option {outcome.answer}, independently {expected}"
        return
    tolerance = LOOSER.get(exercise_id, AGREE)
    if isinstance(expected, dict):
        assert list(expected) == list(outcome.answer), exercise_id
        for label, value in expected.items():
            assert is_close(outcome.answer[label], value, **tolerance), (exercise_id, label, outcome.answer[label], value)
    else:
        assert is_close(outcome.answer, np.asarray(expected, dtype=float), **tolerance), (exercise_id, outcome.answer, expected)


# ----------------------------------------------------------------------------- every solution runs and agrees


@pytest.mark.parametrize("exercise_id", [e.id for e in EXERCISES])
def test_worked_solution_runs_and_renders(exercise_id: str, outcomes) -> None:
    exercise, outcome = BY_ID[exercise_id], outcomes[exercise_id]
    assert problems(exercise, outcome) == []
    _, errors = exercisesmd.render(exercise, outcome)
    assert errors == []
    assert outcome.output.strip(), f"{exercise_id}: the worked solution prints nothing"


def test_every_chapter_has_exercises_and_every_kind_is_used() -> None:
    assert {e.chapter for e in EXERCISES} == set(CHAPTERS)
    assert {e.kind for e in EXERCISES} == {"numeric", "choice", "symbolic", "explain"}


def test_ids_are_unique_and_found() -> None:
    assert len({e.id for e in EXERCISES}) == len(EXERCISES)
    assert get_exercise("transformer.loss-gradient").chapter == "transformer-backward"
    with pytest.raises(KeyError, match="no.such"):
        get_exercise("no.such")


@pytest.mark.parametrize("exercise_id", [e.id for e in EXERCISES if e.givens is not None])
def test_givens_are_written_exactly_in_the_solution(exercise_id: str) -> None:
    """The literal at the top of the solution evaluates to exactly the given (same type, every bit)."""
    for name, value in BY_ID[exercise_id].given_values().items():
        copy = eval(literal(value), {"np": np})  # noqa: S307 - our own literals
        assert type(copy) is type(value), (exercise_id, name)
        assert np.array_equal(np.asarray(copy), np.asarray(value)), (exercise_id, name)
        if isinstance(value, np.ndarray):
            assert copy.dtype == value.dtype, (exercise_id, name)


def test_symbolic_answers_are_registered_claims() -> None:
    from derivations.symbolic import get_claim

    for exercise in EXERCISES:
        for claim in exercise.claims:
            get_claim(claim)


def test_checks_in_model_answers_are_true(outcomes) -> None:
    """Every {{ check: ... }} of a discussion holds (render would report a false one; this counts them)."""
    guarded = 0
    for exercise in EXERCISES:
        text, errors = exercisesmd.fill(exercise.discussion, {**outcomes[exercise.id].givens, **outcomes[exercise.id].values})
        assert errors == [], (exercise.id, errors)
        guarded += exercise.discussion.count("{{ check:")
    assert guarded >= 15


def test_shown_answers_pass_their_own_check(outcomes) -> None:
    """The rounded answer in the reveal would be accepted if a reader typed it."""
    for exercise in EXERCISES:
        if exercise.kind != "numeric":
            continue
        answer = outcomes[exercise.id].answer
        for value in (answer.values() if isinstance(answer, dict) else [answer]):
            for x in np.ravel(value):
                tex, _ = exercisesmd._answer_entry(x, exercise.rtol, exercise.atol)
                shown = float(tex.replace("{,}", "").replace(r" \times 10^{", "e").rstrip("}")) if "times" in tex \
                    else float(tex.replace("{,}", ""))
                assert is_close(shown, x, exercise.rtol, exercise.atol), (exercise.id, tex, x)


# ----------------------------------------------------------------------------- the registry's rules


def test_tolerance_follows_prairielearn() -> None:
    assert is_close(1.0 + 1e-3, 1.0, rtol=0.0, atol=1e-3)  # the boundary counts
    assert not is_close(1.0 + 1.1e-3, 1.0, rtol=0.0, atol=1e-3)
    # relative to the answer a, not to the reader's x: |2 - 1| <= 0.5 |1| is false, <= 0.5 |2| would be true
    assert not is_close(2.0, 1.0, rtol=0.5, atol=0.0)
    assert is_close([0.0, 100.0], [1e-9, 100.5], rtol=1e-2, atol=1e-8)
    assert not is_close([1.0], [1.0, 1.0], rtol=1, atol=1)


BASE = dict(id="x.y", chapter="notation", kind="numeric", title="t", prompt="p", solution="answer = 1",
            answer=lambda: 1.0, atol=1e-3)


@pytest.mark.parametrize("change, message", [
    ({"id": "No Dots"}, "dotted lowercase"),
    ({"chapter": "nowhere"}, "chapter 'nowhere'"),
    ({"kind": "essay"}, "kind 'essay'"),
    ({"atol": 0.0}, "needs a tolerance"),
    ({"rtol": -1.0}, "non-negative"),
    ({"answer": None}, "needs an answer"),
    ({"kind": "choice", "options": ("only one",)}, "at least two options"),
    ({"kind": "symbolic", "answer": None}, "at least one proven claim"),
    ({"kind": "explain", "answer": None}, "model answer"),
    ({"solution": "  "}, "worked solution"),
])
def test_bad_entries_are_rejected_naming_the_id(change, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        Exercise(**{**BASE, **change})
    assert "x.y" in str(error.value) or "No Dots" in str(error.value)


def _bad(**change) -> Exercise:
    return Exercise(**{**BASE, "id": "bad.entry", **change})


@pytest.mark.parametrize("change, message", [
    ({"answer": lambda: 1.01}, "disagrees with the worked solution"),  # a wrong stored answer
    ({"solution": "raise RuntimeError('boom')"}, "the solution raised RuntimeError: boom"),
    ({"solution": "x = 1"}, "does not assign `answer`"),
    ({"answer": lambda: {"a": 1.0}}, "has parts"),
    ({"kind": "choice", "options": ("a", "b"), "answer": lambda: 1, "solution": "answer = 0", "atol": 0.0},
     "picks option 0, the stored answer is option 1"),
    ({"kind": "choice", "options": ("a", "b"), "answer": lambda: 5, "solution": "answer = 5", "atol": 0.0},
     "not an option index"),
    ({"answer": lambda: float("nan"), "solution": "answer = float('nan')"}, "not finite"),
    ({"givens": lambda: 1 / 0}, "the givens raised ZeroDivisionError"),
])
def test_broken_exercises_are_reported_with_their_id(change, message) -> None:
    exercise = _bad(**change)
    found = problems(exercise, run(exercise))
    assert found and all("bad.entry" in p for p in found), found
    assert any(message in p for p in found), found


def test_a_correct_entry_has_no_problems() -> None:
    """The control for the test above."""
    assert problems(_bad(), run(_bad())) == []


def test_solution_code_puts_givens_after_imports() -> None:
    exercise = _bad(givens=lambda: {"v": np.array([1.5, -2.0])}, answer=lambda v: v.sum(),
                    solution="from math import fsum\n\nanswer = fsum(v)")
    code = exercise.code()
    assert code.index("import numpy as np") < code.index("from math import fsum") < code.index("v = np.array")
    assert problems(exercise, run(exercise)) == []


# ----------------------------------------------------------------------------- values in prompts


def test_fill_typesets_by_context_and_keeps_givens_exact() -> None:
    text, errors = exercisesmd.fill(r"Take \(v = {{ v }}\) and w = {{ w }}; p is {{ p:fix2 }}.",
                                    {"v": np.array([0.25, -1.0]), "w": 0.123456789, "p": 0.5}, frozenset({"v", "w"}))
    assert errors == []
    assert r"\(v = \begin{bmatrix} 0.25 & -1 \end{bmatrix}\)" in text
    assert "w = 0.123456789;" in text and "p is 0.50." in text


def test_fill_reports_unknown_names_and_false_checks_by_line() -> None:
    _, errors = exercisesmd.fill("fine\nuses {{ nothing }}\nclaims.{{ check: flag }}", {"flag": False})
    assert [line for line, _ in errors] == [2, 3]
    assert "'nothing' is not a given" in errors[0][1] and "is false" in errors[1][1]


def test_the_page_carries_the_answer_and_the_tolerance(outcomes) -> None:
    exercise = get_exercise("transformer.loss-gradient")
    text, errors = exercisesmd.render(exercise, outcomes[exercise.id])
    assert errors == []
    answer = re.search(r'data-answer="([^"]+)"', text).group(1)
    assert np.allclose(eval(answer.replace("&quot;", "")), outcomes[exercise.id].answer, rtol=0, atol=0)  # noqa: S307
    assert f'data-atol="{exercise.atol!r}"' in text and 'data-rtol="0.0"' in text
    assert r"|x - a| \le 10^{-3}" in text
    assert '??? success "Solution"' in text


# ----------------------------------------------------------------------------- placement on pages


def _placed() -> dict[str, list[str]]:
    import json

    placed: dict[str, list[str]] = {}
    for path in sorted(DOCS.rglob("*.md")) + sorted(DOCS.rglob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"] if c["cell_type"] == "markdown")
        for exercise_id, line in exercisesmd.find_markers(text):
            placed.setdefault(exercise_id, []).append(f"{path.relative_to(DOCS)}:{line}")
    return placed


def test_every_exercise_is_placed_on_a_page_and_every_marker_is_known() -> None:
    placed = _placed()
    assert sorted(set(BY_ID) - set(placed)) == [], "exercises on no page"
    assert sorted(set(placed) - set(BY_ID)) == [], "markers naming no exercise"


def test_each_chapter_has_a_questions_page_with_its_exercises_in_registry_order() -> None:
    for chapter in CHAPTERS:
        text = (DOCS / "questions" / f"{chapter}.md").read_text(encoding="utf-8")
        ids = [exercise_id for exercise_id, _ in exercisesmd.find_markers(text)]
        assert ids == [e.id for e in EXERCISES if e.chapter == chapter], chapter


def test_the_index_lists_every_exercise_under_its_chapter_linked_to_its_page() -> None:
    placed = {e.id: f"questions/{e.chapter}.md" for e in EXERCISES}
    index, errors = exercisesmd.index_markdown(placed, "exercises.md")
    assert not errors
    sections = re.split(r"^## ", index, flags=re.MULTILINE)[1:]
    assert len(sections) == len(CHAPTERS)
    for chapter, section in zip(CHAPTERS, sections):
        links = re.findall(r"\]\((questions/[^)#]+)#([^)]+)\)", section)
        chapter_exercises = [e for e in EXERCISES if e.chapter == chapter]
        assert links == [(f"questions/{chapter}.md", e.anchor) for e in chapter_exercises], chapter
    _, errors = exercisesmd.index_markdown({k: v for k, v in placed.items() if k != EXERCISES[0].id}, "exercises.md")
    assert errors and EXERCISES[0].id in errors[0]  # an exercise on no page is reported, not silently left out


def test_unknown_marker_is_an_error_naming_the_line() -> None:
    _, errors = exercisesmd.expand("# P\n\ntext\n\n[[exercise: notation.scores-by-hnd]]\n", "page.md")
    assert len(errors) == 1 and errors[0].startswith("line 5: unknown exercise id 'notation.scores-by-hnd'")
    assert "did you mean notation.scores-by-hand" in errors[0]


# ----------------------------------------------------------------------------- hands-on: starters and solutions


HANDSON = ROOT / "derivations" / "exercises" / "handson"


def _script(name: str) -> dict:
    namespace = {"__name__": "not_main"}
    exec(compile((HANDSON / f"{name}.py").read_text(), str(HANDSON / f"{name}.py"), "exec"), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize("name", ["attention", "gradcheck", "cost", "lm", "visualise"])
def test_starter_code_runs_as_it_is(name: str, capsys) -> None:
    _script(f"{name}_starter")["main"]()
    printed = capsys.readouterr().out
    assert printed.strip()
    if name != "visualise":  # the visualisation starter runs fully; it leaves the drawing to the reader
        assert "not yet" in printed


def test_attention_check_accepts_the_solution_and_rejects_mistakes() -> None:
    solution, starter = _script("attention_solution"), _script("attention_starter")
    check = solution["check"]
    assert check(solution["my_attention"]) is True
    assert check(starter["my_attention"]) is False

    def unscaled(Q, K, V, mask=None):
        return solution["my_attention"](Q * math.sqrt(Q.shape[-1]), K, V, mask)

    def unmasked(Q, K, V, mask=None):
        return solution["my_attention"](Q, K, V, None)

    assert check(unscaled) is False and check(unmasked) is False


def test_gradcheck_solution_catches_the_bug_and_accepts_the_truth() -> None:
    solution = _script("gradcheck_solution")
    errors = solution["main"]()
    assert errors["polynomial"] < 1e-8 and errors["attention"] < 1e-6 and errors["buggy"] > 1e-2
    x = np.array([0.3, -1.2])
    numeric = solution["numerical_gradient"](lambda v: float(np.sum(np.sin(v))), x)
    assert np.allclose(numeric, np.cos(x), atol=1e-9)


def test_language_model_gradients_match_torch_and_its_check_catches_mistakes() -> None:
    lm = _script("lm_solution")
    config = lm["language_config"](vocab_size=6, seq_len=5, d_model=4, n_heads=2, d_ff=8)
    from derivations.reference.model import init_params

    rng = np.random.default_rng(3)
    params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in init_params(config, 0).items()}
    tokens = rng.integers(0, 6, size=(3, 6))
    loss, grads = lm["loss_and_grads"](params, tokens, config)

    P = {k: t(v, grad=True) for k, v in params.items()}
    T = tokens.shape[1] - 1
    x = P["embed"][torch.tensor(tokens[:, :-1])] + t(lm["positional_encoding"](config.seq_len, config.d_model)[:T])
    ln = lambda h, name: torch.nn.functional.layer_norm(h, (4,), P[name + ".gamma"], P[name + ".beta"], 1e-5)  # noqa: E731
    h = ln(x, "block0.ln1")
    Q, K, V = h @ P["block0.attn.W_q"], h @ P["block0.attn.W_k"], h @ P["block0.attn.W_v"]
    heads = [torch.nn.functional.scaled_dot_product_attention(Q[..., k:k + 2], K[..., k:k + 2], V[..., k:k + 2],
                                                              is_causal=True) for k in (0, 2)]
    x = x + torch.cat(heads, -1) @ P["block0.attn.W_o"]
    f = torch.relu(ln(x, "block0.ln2") @ P["block0.ffn.W1"] + P["block0.ffn.b1"]) @ P["block0.ffn.W2"] + P["block0.ffn.b2"]
    logits = ln(x + f, "ln_final") @ P["W_out"] + P["b_out"]
    reference = torch.nn.functional.cross_entropy(logits.reshape(-1, 6), torch.tensor(tokens[:, 1:]).reshape(-1))
    reference.backward()
    assert abs(loss - reference.item()) < 1e-12
    for name in params:
        assert np.allclose(grads[name], P[name].grad.numpy(), rtol=1e-9, atol=1e-12), name

    assert lm["check"](lm["logits"], lm["loss_and_grads"]) < 1e-6

    def leaky(params, tokens, config):  # attention without the mask: the future reaches the past
        saved = lm["causal_mask"]
        lm["causal_mask"] = lambda T: np.ones((T, T), dtype=bool)
        try:
            return saved and lm["_forward"](params, tokens, config)[0]
        finally:
            lm["causal_mask"] = saved

    assert lm["check"](leaky, lm["loss_and_grads"]) == np.inf

    def halved(params, tokens, config):
        loss, grads = lm["loss_and_grads"](params, tokens, config)
        return loss, {k: g / 2 if k == "W_out" else g for k, g in grads.items()}

    assert lm["check"](lm["logits"], halved) > 0.1


def test_language_model_learns(outcomes) -> None:
    measured = outcomes["walkthrough.tiny-language-model"].values["measured"]
    assert measured["loss_fell"] and measured["after"] < measured["uniform"] < measured["before"] + 1
    assert "greedy: 'The miller " in outcomes["walkthrough.tiny-language-model"].output


def test_attention_memory_is_quadratic_and_time_grows_faster_than_linear() -> None:
    cost = _script("cost_solution")
    saved, weights, flops = zip(*(cost["measure"](n) for n in (128, 256)))
    assert weights[1] == 4 * weights[0] and flops[1] == 4 * flops[0]
    assert saved[0] == 8 * (3 * 128 * 64 + 128 * 128)
    # Wall-clock time, never shown on a page: loose, and the fastest of several runs.
    small = min(cost["time_attention"](128, repeats=3) for _ in range(3))
    large = min(cost["time_attention"](1024, repeats=3) for _ in range(3))
    assert large > 4 * small, (small, large)


def test_visualisation_draws_every_head(outcomes) -> None:
    svg = outcomes["transformer.visualise-attention"].figure_svg
    assert svg and svg.lstrip().startswith(("<?xml", "<svg"))
    assert svg.count("block 1, head 3") == 1


# ----------------------------------------------------------------------------- the build fails on broken entries

BROKEN = '''
from derivations.exercises import Exercise

EXERCISES = [
    Exercise(id="bad.wrong-answer", chapter="notation", kind="numeric", title="Wrong", prompt="Compute it.",
             solution="answer = 2.0", answer=lambda: 3.0, atol=1e-3),
    Exercise(id="bad.raises", chapter="notation", kind="numeric", title="Raises", prompt="Compute it.",
             solution="raise ValueError('boom')", answer=lambda: 1.0, atol=1e-3),
    Exercise(id="bad.false-check", chapter="notation", kind="explain", title="False", prompt="Explain it.",
             solution="flag = 1 > 2", discussion="It holds.{{ check: flag }}"),
    Exercise(id="bad.unknown-name", chapter="notation", kind="explain", title="Unknown", prompt="Uses {{ nothing }}.",
             solution="x = 1", discussion="Fine."),
]
'''


@pytest.mark.xdist_group("exercise-sites")
def test_broken_exercises_fail_the_build_naming_the_id(tmp_path: Path, monkeypatch) -> None:
    extra = tmp_path / "broken_exercises.py"
    extra.write_text(BROKEN)
    monkeypatch.setenv("VB_EXTRA_EXERCISES", str(extra))
    page = ("# P\n\n[[exercise: bad.wrong-answer]]\n\n[[exercise: bad.raises]]\n\n[[exercise: bad.false-check]]\n\n"
            "[[exercise: bad.unknown-name]]\n\n[[exercise: no.such-exercise]]\n")
    result = _mini(tmp_path, page)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    for expected in ("docs/page.md: line 3: exercise bad.wrong-answer: the stored answer 3.0 disagrees with the worked solution's 2.0",
                     "docs/page.md: line 5: exercise bad.raises: the solution raised ValueError: boom",
                     "docs/page.md: line 7: exercise bad.false-check: discussion line 1: {{ check: flag }}: check 'flag' is false",
                     "docs/page.md: line 9: exercise bad.unknown-name: prompt line 1: {{ nothing }}",
                     "docs/page.md: line 11: unknown exercise id 'no.such-exercise'"):
        assert expected in log, f"missing {expected!r} in\n{log}"


def _mini(tmp_path: Path, page: str):
    from test_site import mini_site

    folder = tmp_path / "mini"
    folder.mkdir()
    return mini_site(folder, page)


@pytest.mark.xdist_group("exercise-sites")
def test_an_exercise_on_a_mini_site_builds(exercise_site: Path) -> None:
    """The control: real exercises of every kind render, with their controls, math and solution
    (on conftest's small site that holds every exercise on one page)."""
    html = (exercise_site / "all" / "index.html").read_text(encoding="utf-8")

    def exercise(exercise_id: str) -> str:
        start = html.index(f'id="exercise-{exercise_id.replace(".", "-")}"')
        end = html.find('<div class="exercise" ', start)
        return html[start:] if end == -1 else html[start:end]

    numeric, choice, symbolic = (exercise(e) for e in ("notation.delta-picks", "notation.which-contraction",
                                                        "notation.chain-rule-claim"))
    assert 'data-answer="[2.0, -0.5, 0.75]"' in numeric and 'class="exercise-choice"' in choice
    assert all("<details" in part and 'class="katex"' in part for part in (numeric, choice, symbolic))
    # The collapsed answer holds the whole solution: the claim, then the code, then the closing tag.
    details = symbolic[symbolic.index("<details"):symbolic.index("</details>")]
    assert "claim-badge" in details and 'class="highlight"' in details and "finite difference" in details


def test_a_chapter_notebook_points_to_the_page_for_its_exercises() -> None:
    """A chapter downloaded as a notebook cannot check answers: the marker becomes a pointer, never raw text."""
    import chapternotebook

    nb = chapternotebook.build("# Chapter\n\nText.\n\n[[exercise: notation.delta-picks]]\n", "Chapter")
    text = "\n".join("".join(cell["source"]) for cell in nb.cells)
    assert "[[" not in text and "Exercise `notation.delta-picks`: on this chapter's page" in text
