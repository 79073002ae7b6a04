"""The engine: values that record the operations applied to them, and the two passes over the record.

Define-by-run: ordinary Python runs on :class:`Var` values, and every operation
applied to a value that requires a gradient appends a :class:`Node` to the
graph. A node holds its :class:`Op`, its input values, and the cache its
forward function returned: the *saved tensors*, exactly what its rules need.
Nodes are numbered in the order they were created, so the creation order is a
topological order of the graph (a node's inputs always exist before it): the
graph is also a tape, and running the tape backwards is a valid backward pass.

Two passes read the record:

- reverse mode (:func:`backward`, :func:`grad`, :func:`vjp`) walks the nodes
  reachable from an output in reverse creation order and applies each op's
  vector-Jacobian product (VJP) rule to the cotangent of its output, summing
  the contributions that reach a value through several uses;
- forward mode (:func:`linearize`, :func:`jvp`) walks the same nodes in
  creation order and applies each op's Jacobian-vector product (JVP) rule to
  the tangents of its inputs.

Both are linear maps built from the saved tensors of one forward pass; the VJP
rules are the transposes of the JVP rules, so reverse mode is the linearised
function transposed.

The engine knows nothing about any particular operation: the ops and their
rules live in :mod:`derivations.autodiff.ops`, one line per op.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from ..reference._checks import as_float64, require

__all__ = [
    "Var",
    "Node",
    "Op",
    "Saved",
    "SavedTensor",
    "Graph",
    "apply",
    "backward",
    "grad",
    "zero_grad",
    "no_grad",
    "is_recording",
    "vjp",
    "linearize",
    "jvp",
    "jacfwd",
    "jacrev",
    "count_flops",
    "sum_to",
]


# ----------------------------------------------------------------------------- values and nodes


class Var:
    """A float64 array in a recorded computation.

    Parameters
    ----------
    value : array_like
        Kept as a float64 array (not copied when it already is one).
    requires_grad : bool
        Whether gradients are wanted for this value: operations on it are
        recorded, and :func:`backward` accumulates into its ``grad``.
    name : str, optional
        Shown when the graph is inspected.

    Attributes
    ----------
    grad : ndarray or None
        The accumulated gradient of a leaf (a value no recorded node produced);
        None until a backward pass reaches it. Intermediate values keep none.
    node : Node or None
        The node that produced this value; None for a leaf.
    """

    __slots__ = ("value", "requires_grad", "grad", "name", "node", "output_index")
    __array_priority__ = 1000  # ``array * var`` calls Var.__rmul__, not NumPy's broadcasting multiply

    def __init__(self, value, requires_grad: bool = False, name: str | None = None):
        self.value = as_float64(value, name or "value")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.name = name
        self.node = None
        self.output_index = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def ndim(self) -> int:
        return self.value.ndim

    @property
    def is_leaf(self) -> bool:
        return self.node is None

    def detach(self) -> "Var":
        """A new leaf with the same value that requires no gradient: the graph stops here."""
        return Var(self.value, requires_grad=False, name=self.name)

    def backward(self, grad=None, retain_graph: bool = False) -> list["Node"]:
        """:func:`backward` from this value."""
        return backward(self, grad, retain_graph)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        origin = f"from {self.node.op.name} #{self.node.seq}" if self.node else (
            "leaf, requires_grad" if self.requires_grad else "constant")
        return f"Var{label} {self.shape} ({origin})"


class Node:
    """One recorded application of an op.

    Attributes
    ----------
    op : Op
    inputs : tuple
        The op's array inputs as given: a :class:`Var`, or a constant array.
    outputs : tuple of Var
    cache : object or None
        What the forward function returned for the rules; None once freed.
    seq : int
        Creation number; larger means created later.
    """

    __slots__ = ("op", "inputs", "outputs", "cache", "seq")

    def __init__(self, op, inputs, outputs, cache, seq):
        self.op, self.inputs, self.outputs, self.cache, self.seq = op, inputs, outputs, cache, seq

    @property
    def freed(self) -> bool:
        return self.cache is None

    def parents(self) -> list["Node"]:
        """The nodes that produced this node's inputs (recorded ones only)."""
        return [x.node for x in self.inputs if isinstance(x, Var) and x.node is not None]

    def saved(self, name: str) -> np.ndarray:
        """The saved array called ``name`` (a name :meth:`saved_tensors` lists)."""
        require(not self.freed, f"node #{self.seq} ({self.op.name}): its saved tensors were freed by a backward pass")
        arrays = dict(_named_arrays(self.cache, self.op.saves))
        require(name in arrays, f"node #{self.seq} ({self.op.name}) saves {list(arrays)}, not {name!r}")
        return arrays[name]

    def saved_tensors(self) -> list["SavedTensor"]:
        """The arrays in this node's cache, named by the op's ``saves``."""
        require(not self.freed, f"node #{self.seq} ({self.op.name}): its saved tensors were freed by a backward pass")
        inputs = [x.value if isinstance(x, Var) else np.asarray(x) for x in self.inputs]
        return [SavedTensor(name, array.shape, array.dtype.name, int(array.nbytes),
                            any(_same_buffer(array, x) for x in inputs))
                for name, array in _named_arrays(self.cache, self.op.saves)]

    def __repr__(self) -> str:
        return f"Node #{self.seq} {self.op.name}"


@dataclass(frozen=True)
class Op:
    """An operation and its two derivative rules.

    Attributes
    ----------
    name : str
    forward : callable
        ``forward(*input_arrays, **static) -> (output, cache)``; several outputs
        as a tuple when ``n_outputs > 1``. ``static`` holds the arguments that
        are not differentiated (masks, token ids, sizes).
    vjp : callable
        ``vjp(cotangent, cache, needs) -> one gradient per input`` (None where
        there is none); ``needs[k]`` says whether input ``k`` wants one, for
        rules that can skip work. With several outputs the cotangent is a tuple.
    jvp : callable
        ``jvp(cache, *tangents) -> output tangent``; a None tangent means zero.
    saves : tuple
        Names of the cache's entries, for inspection. An entry is a name, or
        ``(prefix, names)`` for a nested cache; a cache with named fields
        (a ``NamedTuple`` or :class:`Saved`) needs none.
    n_outputs : int
    cost : tuple of three callables, optional
        Floating-point operations of ``(forward, jvp, vjp)``, each
        ``cost(cache, flags) -> int`` with ``flags`` the tangents present (JVP)
        or ``needs`` (VJP); counted by :func:`count_flops`.
    """

    name: str
    forward: Callable
    vjp: Callable
    jvp: Callable
    saves: tuple = ()
    n_outputs: int = 1
    cost: tuple | None = None


class Saved(dict):
    """A cache with named entries, read as attributes: ``cache.x``."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this cache saves {sorted(self)}, not {name!r}") from None


class SavedTensor(NamedTuple):
    """One array a node keeps for its rules."""

    name: str
    shape: tuple
    dtype: str
    nbytes: int
    is_input: bool  #: the same memory as one of the node's inputs (kept alive, not copied)


def _owner(array):
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _same_buffer(a, b) -> bool:
    return isinstance(b, np.ndarray) and _owner(a) is _owner(b)


def _named_arrays(cache, names, prefix=""):
    """``(name, array)`` for every array in a cache; other entries (flags, sizes) are skipped."""
    if isinstance(cache, np.ndarray):
        yield prefix.rstrip(".") or "cache", cache
    elif isinstance(cache, dict):
        for key, item in cache.items():
            yield from _named_arrays(item, (), f"{prefix}{key}.")
    elif isinstance(cache, tuple) and hasattr(cache, "_fields"):
        for key, item in zip(cache._fields, cache):
            yield from _named_arrays(item, (), f"{prefix}{key}.")
    elif isinstance(cache, (tuple, list)):
        for k, item in enumerate(cache):
            name = names[k] if k < len(names) else str(k)
            if isinstance(name, tuple):
                name, sub = name
                yield from _named_arrays(item, sub, f"{prefix}{name}.")
            else:
                yield from _named_arrays(item, (), f"{prefix}{name}.")


# ----------------------------------------------------------------------------- recording

_recording = True
_sequence = itertools.count()
_tallies: list[Counter] = []


@contextlib.contextmanager
def no_grad():
    """Inside, operations are computed but not recorded: their results are constants."""
    global _recording
    previous, _recording = _recording, False
    try:
        yield
    finally:
        _recording = previous


def is_recording() -> bool:
    """False inside :func:`no_grad`."""
    return _recording


@contextlib.contextmanager
def count_flops():
    """Count the floating-point operations of every rule the engine runs inside.

    Yields a ``Counter`` with keys ``"forward"``, ``"jvp"`` and ``"vjp"`` (flops,
    from each op's ``cost``) and ``"forward calls"``, ``"jvp calls"``, ``"vjp calls"``;
    rules of ops without a cost are counted under ``"uncounted"``.
    """
    tally = Counter()
    _tallies.append(tally)
    try:
        yield tally
    finally:
        _tallies.remove(tally)


def _count(op, kind, cache, flags):
    if not _tallies:
        return
    index = ("forward", "jvp", "vjp").index(kind)
    flops = None if op.cost is None else int(op.cost[index](cache, flags))
    for tally in _tallies:
        tally[kind + " calls"] += 1
        if flops is None:
            tally["uncounted"] += 1
        else:
            tally[kind] += flops


def apply(op: Op, *inputs, **static):
    """Run ``op`` on ``inputs`` (Vars or arrays) and record a node if any input requires a gradient.

    Returns the output Var, or a tuple of them for an op with several outputs.
    """
    values = [x.value if isinstance(x, Var) else x for x in inputs]
    out, cache = op.forward(*values, **static)
    outs = tuple(out) if op.n_outputs > 1 else (out,)
    tracked = _recording and any(isinstance(x, Var) and x.requires_grad for x in inputs)
    results = tuple(Var(o, requires_grad=tracked) for o in outs)
    if tracked:
        node = Node(op, tuple(inputs), results, cache, next(_sequence))
        for k, result in enumerate(results):
            result.node, result.output_index = node, k
    _count(op, "forward", cache, None)
    return results if op.n_outputs > 1 else results[0]


# ----------------------------------------------------------------------------- reverse mode


def _reachable(outputs) -> list[Node]:
    """Every node an output depends on, in creation order (a topological order)."""
    seen, stack = {}, [v.node for v in outputs if isinstance(v, Var) and v.node is not None]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            stack.extend(node.parents())
    return sorted(seen.values(), key=lambda node: node.seq)


def _freed_error(node):
    return RuntimeError(
        f"node #{node.seq} ({node.op.name}) was reached a second time after its saved tensors were freed: "
        f"a backward pass frees them unless called with retain_graph=True")


def _as_cotangent(var, g, what):
    if g is None:
        require(var.value.size == 1,
                f"{what} of an output of shape {var.shape} needs its cotangent (the gradient of the loss "
                f"with respect to it): only a single-number output has an implicit cotangent of 1")
        return np.ones_like(var.value)
    g = as_float64(g, "grad")
    require(g.shape == var.shape, f"grad {g.shape} does not match the output's shape {var.shape}")
    return g


def _backpropagate(outputs, cotangents, retain_graph):
    """Cotangents of every value the outputs depend on, and the nodes in the order visited."""
    grads = {}
    for var, g in zip(outputs, cotangents):
        grads[id(var)] = grads[id(var)] + g if id(var) in grads else g
    visited = []
    for node in reversed(_reachable(outputs)):
        gs = [grads.get(id(out)) for out in node.outputs]
        if all(g is None for g in gs):
            continue
        if node.freed:
            raise _freed_error(node)
        gs = [np.zeros_like(out.value) if g is None else g for out, g in zip(node.outputs, gs)]
        needs = tuple(isinstance(x, Var) and x.requires_grad for x in node.inputs)
        input_grads = node.op.vjp(tuple(gs) if node.op.n_outputs > 1 else gs[0], node.cache, needs)
        if isinstance(input_grads, np.ndarray):
            input_grads = (input_grads,)
        _count(node.op, "vjp", node.cache, needs)
        for x, wanted, g in zip(node.inputs, needs, input_grads):
            if wanted and g is not None:
                grads[id(x)] = grads[id(x)] + g if id(x) in grads else g
        visited.append(node)
        if not retain_graph:
            node.cache = None
    return grads, visited


def backward(output: Var, grad=None, retain_graph: bool = False) -> list[Node]:
    """Reverse mode from ``output``: add the gradient of every leaf that requires one to its ``grad``.

    Parameters
    ----------
    output : Var
        Usually the scalar loss.
    grad : array_like, optional
        The cotangent of ``output``; defaults to 1 for a single-number output.
    retain_graph : bool
        Keep the saved tensors, so that another backward pass can run; by
        default each node frees them once its rule has run.

    Returns
    -------
    list of Node
        The nodes in the order the pass visited them: reverse creation order,
        only those ``output`` depends on.

    Raises
    ------
    ValueError
        If ``output`` does not depend on anything that requires a gradient, or
        ``grad`` is missing or of the wrong shape.
    RuntimeError
        If the pass reaches a node whose saved tensors an earlier pass freed.
    """
    require(isinstance(output, Var) and output.requires_grad,
            f"backward needs a Var computed from a value that requires a gradient, got {output!r}")
    grads, visited = _backpropagate([output], [_as_cotangent(output, grad, "backward")], retain_graph)
    leaves = {id(x): x for node in visited for x in node.inputs
              if isinstance(x, Var) and x.is_leaf and x.requires_grad}
    if output.is_leaf:
        leaves[id(output)] = output
    for key, leaf in leaves.items():
        if key in grads:
            leaf.grad = grads[key] if leaf.grad is None else leaf.grad + grads[key]
    return visited


def grad(output: Var, inputs, grad_output=None, retain_graph: bool = False) -> list:
    """Gradients of ``output`` with respect to ``inputs``, returned; nothing accumulates into ``.grad``.

    Parameters
    ----------
    output : Var
    inputs : sequence of Var
        Leaves or intermediate values.
    grad_output : array_like, optional
        The cotangent of ``output`` (1 for a single-number output).
    retain_graph : bool
        As in :func:`backward`.

    Returns
    -------
    list
        One array per input; None for an input ``output`` does not depend on
        or that does not require a gradient.
    """
    require(isinstance(output, Var) and output.requires_grad,
            f"grad needs a Var computed from a value that requires a gradient, got {output!r}")
    grads, _ = _backpropagate([output], [_as_cotangent(output, grad_output, "grad")], retain_graph)
    return [grads.get(id(x)) if isinstance(x, Var) and x.requires_grad else None for x in inputs]


def zero_grad(variables) -> None:
    """Reset the ``grad`` of every Var to None (what PyTorch's ``zero_grad`` does by default)."""
    for var in variables:
        var.grad = None


# ----------------------------------------------------------------------------- forward mode


def _push_forward(outputs, seeds: dict) -> dict:
    """Tangents of every value the outputs depend on, from the tangents ``seeds`` of some leaves."""
    tangents = dict(seeds)
    for node in _reachable(outputs):
        ts = [tangents.get(id(x)) if isinstance(x, Var) else None for x in node.inputs]
        if all(t is None for t in ts):
            continue
        if node.freed:
            raise _freed_error(node)
        out = node.op.jvp(node.cache, *ts)
        _count(node.op, "jvp", node.cache, tuple(t is not None for t in ts))
        for var, t in zip(node.outputs, out if node.op.n_outputs > 1 else (out,)):
            if t is not None:
                tangents[id(var)] = t
    return tangents


def _record(f, primals):
    leaves = [Var(x, requires_grad=True, name=f"x{k}") for k, x in enumerate(primals)]
    out = f(*leaves)
    require(isinstance(out, Var), f"f must return one Var, got {type(out).__name__}")
    return leaves, out


def linearize(f, *primals):
    """Record ``f`` once at ``primals``; return its value and its linear map ``u -> J u``.

    Parameters
    ----------
    f : callable
        ``f(*Vars) -> Var``, built from the engine's ops.
    primals : array_like
        The point.

    Returns
    -------
    value : ndarray
    jvp_fn : callable
        ``jvp_fn(*tangents) -> J u``, one tangent per primal; runs only the JVP
        rules, on the saved tensors of the one recorded pass.
    """
    leaves, out = _record(f, primals)

    def jvp_fn(*tangents):
        require(len(tangents) == len(leaves), f"{len(tangents)} tangents for {len(leaves)} inputs")
        seeds = {}
        for leaf, t in zip(leaves, tangents):
            t = as_float64(t, "tangent")
            require(t.shape == leaf.shape, f"tangent {t.shape} does not match input {leaf.shape}")
            seeds[id(leaf)] = t
        result = _push_forward([out], seeds).get(id(out))
        return np.zeros_like(out.value) if result is None else result

    return out.value, jvp_fn


def jvp(f, primals, tangents):
    """``(f(primals), J u)``: forward mode at ``primals`` along ``tangents`` (JAX's ``jvp``)."""
    value, jvp_fn = linearize(f, *primals)
    return value, jvp_fn(*tangents)


def vjp(f, *primals):
    """Record ``f`` once at ``primals``; return its value and the transposed map ``v -> J^T v``.

    Returns
    -------
    value : ndarray
    vjp_fn : callable
        ``vjp_fn(v) -> tuple of J^T v``, one array per primal (zeros for a
        primal the output does not depend on); can be called again and again,
        as the saved tensors are retained.
    """
    leaves, out = _record(f, primals)

    def vjp_fn(v):
        grads, _ = _backpropagate([out], [_as_cotangent(out, v, "vjp")], retain_graph=True)
        return tuple(grads.get(id(leaf), np.zeros_like(leaf.value)) for leaf in leaves)

    return out.value, vjp_fn


def jacfwd(f, x):
    """The Jacobian of ``f`` at ``x`` column by column: one JVP per input entry.

    Returns an array of shape ``f(x).shape + x.shape``.
    """
    x = as_float64(x, "x")
    value, jvp_fn = linearize(f, x)
    columns = [jvp_fn(np.eye(1, x.size, k).reshape(x.shape)) for k in range(x.size)]
    return np.stack(columns, axis=-1).reshape(value.shape + x.shape)


def jacrev(f, x):
    """The Jacobian of ``f`` at ``x`` row by row: one VJP per output entry.

    Returns an array of shape ``f(x).shape + x.shape``.
    """
    x = as_float64(x, "x")
    value, vjp_fn = vjp(f, x)
    rows = [vjp_fn(np.eye(1, value.size, k).reshape(value.shape))[0] for k in range(value.size)]
    return np.stack(rows).reshape(value.shape + x.shape)


# ----------------------------------------------------------------------------- inspection


class Graph:
    """The recorded graph an output depends on, for reading.

    Parameters
    ----------
    output : Var
    names : dict of str to Var, optional
        Names for leaves (a parameter dict), used instead of ``Var.name``.

    Attributes
    ----------
    nodes : list of Node
        In creation order.
    """

    def __init__(self, output: Var, names: dict | None = None):
        self.output = output
        self.nodes = _reachable([output])
        self._position = {id(node): k for k, node in enumerate(self.nodes)}
        self._names = {id(var): name for name, var in (names or {}).items()}

    def index(self, node: Node) -> int:
        """A node's position in :attr:`nodes` (0 = created first)."""
        return self._position[id(node)]

    def name(self, x) -> str:
        """A readable name for an input: the leaf's name, ``#k`` for node ``k``'s output, or ``const``."""
        if not isinstance(x, Var):
            return "const"
        if x.node is not None:
            k = self.index(x.node)
            return f"#{k}" if x.node.op.n_outputs == 1 else f"#{k}[{x.output_index}]"
        return self._names.get(id(x), x.name or ("leaf" if x.requires_grad else "const"))

    def rows(self) -> list[dict]:
        """One dict per node: ``index``, ``op``, ``inputs`` (names), ``output shapes`` and ``saved``."""
        return [{"index": k, "op": node.op.name, "inputs": [self.name(x) for x in node.inputs],
                 "output shapes": [out.shape for out in node.outputs],
                 "saved": [] if node.freed else node.saved_tensors()} for k, node in enumerate(self.nodes)]

    def backward_order(self) -> list[int]:
        """Indices of the nodes in the order a backward pass from the output visits them."""
        return [self.index(node) for node in reversed(self.nodes)]

    def saved_bytes(self, exclude=()) -> int:
        """Bytes of the distinct buffers all nodes save, leaving out those of the ``exclude`` values.

        A buffer several nodes save (an activation that feeds three ops) is
        counted once; pass the parameters as ``exclude`` to count activations only.
        """
        skip = {id(_owner(v.value if isinstance(v, Var) else np.asarray(v))) for v in exclude}
        owners = {}
        for node in self.nodes:
            require(not node.freed, f"node #{node.seq} ({node.op.name}) was freed: record the graph again")
            for _, array in _named_arrays(node.cache, node.op.saves):
                owner = _owner(array)
                if id(owner) not in skip:
                    owners[id(owner)] = owner
        return int(sum(a.nbytes for a in owners.values()))

    def distances(self, sources, weight: Callable[[Node], float] = lambda node: 1, start: Var | None = None) -> list:
        """For each source Var, the smallest total ``weight`` of the nodes on a path from ``start`` back to it.

        ``start`` defaults to the output. With the default weight this is the
        number of operations a gradient passes through on its shortest way back
        from the output to the source (the node that produced ``start`` and the
        node that consumes the source included); ``inf`` where there is no path.
        """
        start = self.output if start is None else start
        best = {id(start.node): weight(start.node)} if start.node is not None else {}
        for node in reversed(self.nodes):  # every consumer of a node comes later in creation order
            d = best.get(id(node))
            if d is None:
                continue
            for parent in node.parents():
                candidate = d + weight(parent)
                if candidate < best.get(id(parent), float("inf")):
                    best[id(parent)] = candidate
        result = []
        for source in sources:
            consumers = [best[id(node)] for node in self.nodes if id(node) in best
                         and any(x is source for x in node.inputs)]
            result.append(min(consumers, default=float("inf")))
        return result


# ----------------------------------------------------------------------------- broadcasting


def sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape``: the adjoint of NumPy's broadcasting."""
    g = np.asarray(g)
    shape = tuple(shape)
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(ax for ax, size in enumerate(shape) if size == 1 and g.shape[ax] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g
