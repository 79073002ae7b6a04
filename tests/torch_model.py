"""The chapter's model written independently with torch.nn modules, for tests to compare against.

Nothing is shared with the NumPy reference but the parameter values (copied in by ``load``). With
``record=True`` the forward pass keeps every intermediate tensor under the reference's stage names
(``derivations.reference.model.STAGES_DOC``) and retains its gradient, so a test can compare each
recorded activation and stage gradient with torch's autograd.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from derivations.reference.model import TransformerConfig


class TorchTransformer(nn.Module):
    """The same model written with torch.nn modules; nothing shared with the NumPy code."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d = config.d_model
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, d)
        # A learned table is a Parameter sliced to the batch's length (the GPT-2 way), not an Embedding.
        self.pos_embed = nn.Parameter(torch.zeros(config.seq_len, d)) if config.positions == "learned" else None
        self.attn = nn.ModuleList(nn.MultiheadAttention(d, config.n_heads, bias=False, batch_first=True)
                                  for _ in range(config.n_layers))
        self.ln1 = nn.ModuleList(nn.LayerNorm(d, eps=config.ln_eps) for _ in range(config.n_layers))
        self.ln2 = nn.ModuleList(nn.LayerNorm(d, eps=config.ln_eps) for _ in range(config.n_layers))
        self.ffn_in = nn.ModuleList(nn.Linear(d, config.d_ff) for _ in range(config.n_layers))
        self.ffn_out = nn.ModuleList(nn.Linear(config.d_ff, d) for _ in range(config.n_layers))
        self.ln_final = nn.LayerNorm(d, eps=config.ln_eps) if config.norm == "pre" else None
        self.head = nn.Linear(d, config.vocab_size)
        self.activation = {"relu": nn.ReLU(), "gelu": nn.GELU(), "gelu_tanh": nn.GELU(approximate="tanh")}[
            config.activation]

    def positions(self, T):
        if self.pos_embed is not None:
            return self.pos_embed[:T]
        d = self.config.d_model
        pos = torch.arange(T, dtype=torch.float64)[:, None]
        pe = torch.zeros(T, d)
        for a in range(d):
            angle = pos[:, 0] / 10000 ** (2 * (a // 2) / d)
            pe[:, a] = torch.sin(angle) if a % 2 == 0 else torch.cos(angle)
        return pe

    def forward(self, tokens, targets, record=False):
        """The mean loss; with ``record`` also ``{stage: tensor}`` (gradients retained) and the attention weights."""
        stages, weights = {}, []

        def keep(name, tensor):
            if record:
                tensor.retain_grad()
                stages[name] = tensor
            return tensor

        def attend(l, h):
            out, A = self.attn[l](h, h, h, need_weights=record, average_attn_weights=False)
            weights.append(A)
            return out

        e = keep("embed.out", self.embed(tokens))
        x = e + self.positions(tokens.shape[1])
        for l in range(self.config.n_layers):
            p = f"block{l}."
            x = keep(p + "in", x)
            if self.config.norm == "post":
                r1 = keep(p + "add1", x + keep(p + "attn.out", attend(l, x)))
                x1 = keep(p + "ln1.out", self.ln1[l](r1))
                r2 = keep(p + "add2", x1 + self._ffn(l, x1, keep, p))
                x = keep(p + "out", self.ln2[l](r2))
            else:
                n1 = keep(p + "ln1.out", self.ln1[l](x))
                x1 = keep(p + "add1", x + keep(p + "attn.out", attend(l, n1)))
                n2 = keep(p + "ln2.out", self.ln2[l](x1))
                x = keep(p + "out", x1 + self._ffn(l, n2, keep, p))
        if self.ln_final is not None:
            x = keep("ln_final.out", self.ln_final(x))
        logits = keep("logits", self.head(keep("final", x[:, -1])))
        loss = F.cross_entropy(logits, targets)
        return (loss, stages, weights) if record else loss

    def _ffn(self, l, h, keep, p):
        pre = keep(p + "ffn.pre", self.ffn_in[l](h))
        act = keep(p + "ffn.act", self.activation(pre))
        return keep(p + "ffn.out", self.ffn_out[l](act))

    def load(self, params):
        """Copy the NumPy parameters in; torch's Linear stores W^T, MultiheadAttention stacks W_q, W_k, W_v."""
        t = lambda a: torch.tensor(a)  # noqa: E731
        with torch.no_grad():
            self.embed.weight.copy_(t(params["embed"]))
            if self.pos_embed is not None:
                self.pos_embed.copy_(t(params["pos_embed"]))
            for l in range(self.config.n_layers):
                p = f"block{l}."
                self.attn[l].in_proj_weight.copy_(
                    torch.cat([t(params[p + f"attn.{W}"]).T for W in ("W_q", "W_k", "W_v")]))
                self.attn[l].out_proj.weight.copy_(t(params[p + "attn.W_o"]).T)
                for ln, name in ((self.ln1[l], "ln1"), (self.ln2[l], "ln2")):
                    ln.weight.copy_(t(params[p + name + ".gamma"]))
                    ln.bias.copy_(t(params[p + name + ".beta"]))
                self.ffn_in[l].weight.copy_(t(params[p + "ffn.W1"]).T)
                self.ffn_in[l].bias.copy_(t(params[p + "ffn.b1"]))
                self.ffn_out[l].weight.copy_(t(params[p + "ffn.W2"]).T)
                self.ffn_out[l].bias.copy_(t(params[p + "ffn.b2"]))
            if self.ln_final is not None:
                self.ln_final.weight.copy_(t(params["ln_final.gamma"]))
                self.ln_final.bias.copy_(t(params["ln_final.beta"]))
            self.head.weight.copy_(t(params["W_out"]).T)
            self.head.bias.copy_(t(params["b_out"]))

    def grads(self):
        """Torch's gradients under the NumPy names and layouts."""
        g = {"embed": self.embed.weight.grad}
        if self.pos_embed is not None:
            g["pos_embed"] = self.pos_embed.grad
        for l in range(self.config.n_layers):
            p = f"block{l}."
            q, k, v = self.attn[l].in_proj_weight.grad.chunk(3)
            g.update({p + "attn.W_q": q.T, p + "attn.W_k": k.T, p + "attn.W_v": v.T,
                      p + "attn.W_o": self.attn[l].out_proj.weight.grad.T})
            for ln, name in ((self.ln1[l], "ln1"), (self.ln2[l], "ln2")):
                g[p + name + ".gamma"], g[p + name + ".beta"] = ln.weight.grad, ln.bias.grad
            g[p + "ffn.W1"], g[p + "ffn.b1"] = self.ffn_in[l].weight.grad.T, self.ffn_in[l].bias.grad
            g[p + "ffn.W2"], g[p + "ffn.b2"] = self.ffn_out[l].weight.grad.T, self.ffn_out[l].bias.grad
        if self.ln_final is not None:
            g["ln_final.gamma"], g["ln_final.beta"] = self.ln_final.weight.grad, self.ln_final.bias.grad
        g["W_out"], g["b_out"] = self.head.weight.grad.T, self.head.bias.grad
        return {k: v.detach().numpy() for k, v in g.items()}


@pytest.fixture(autouse=True)
def float64_torch():
    """Torch in float64, as the reference (autouse in every test module that imports it)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def assert_matches_torch(loss, grads, params, tokens, targets, config, tol: float) -> TorchTransformer:
    """The reference's ``loss`` and ``grads`` equal torch's for the same parameters and batch: the loss
    to relative ``tol``, every gradient entry to ``tol`` relative (or ``tol`` times its largest entry).
    Returns the torch model, for checks of the caller's own."""
    model = TorchTransformer(config)
    model.load(params)
    torch_loss = model(torch.tensor(tokens), torch.tensor(targets))
    torch_loss.backward()
    expected = model.grads()
    assert abs(loss - torch_loss.item()) <= tol * abs(torch_loss.item())
    assert set(grads) == set(expected)
    for name, g in grads.items():
        scale = float(np.max(np.abs(expected[name])))
        np.testing.assert_allclose(g, expected[name], rtol=tol, atol=tol * scale, err_msg=name)
    return model
