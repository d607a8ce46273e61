"""Any network's weight layers and its cut in front of one, read from its traced graph.

`torch.fx` traces the network once (symbolic_trace; every torch.nn module is a
leaf). From the graph come the weight layers (Conv1d/2d/3d, Linear) by their
module path in the order the forward pass calls them, the norm that
normalises each layer's units (a BatchNorm whose only input is the layer's
output, wherever it is registered), and `cut`: the network split in front of
one layer into

    prefix(x) -> (the layer's input, every other value still needed after it)
    layer                     the perturbed module itself
    tail(layer(input), *values) -> the network's output

so that a sweep computes the prefix once, runs the layer per variant and the
tail with the variants folded into the batch. The values the tail needs
(skip connections, branches, class tokens) are the prefix's outputs; whatever
the tail needs that is not a tensor of the batch (a size, a parameter read
with get_attr) is recomputed in the tail from its own inputs.

The same graph gives a layer's neurons (`neurons`: its output after the
elementwise maps that alone read it, where crash faults strike) and
`cut_after`, the network cut right after them, for the crash engine and the
fault bounds.

A network that fx cannot trace (data-dependent control flow) has no graph:
`layer_table` then orders layers by a forward pass with hooks, and callers
run it whole per variant (`trace` returns None and logs why).
"""

from __future__ import annotations

import copy
import difflib
import logging
import math
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn

log = logging.getLogger(__name__)

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Norms with one scale and shift per unit of the layer before them: zeroing a unit's
# weights leaves them to emit a constant, so node knockout zeroes their scale and shift too.
UNIT_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_EXAMPLE_BATCH = 3  # the batch of the example input: values with this leading size are batch values


class Uncuttable(ValueError):
    """A network that cannot be cut in front of a layer (untraceable, or the layer is shared):
    it still runs, whole, once per variant."""


@dataclass(frozen=True)
class Layer:
    """One weight layer: its module path, type, parameter count, output units and norm."""

    name: str
    type: str
    parameters: int
    out_features: int
    norm: str | None  # module path of the norm that follows it in the graph (UNIT_NORMS)


def trace(model: nn.Module) -> fx.GraphModule | None:
    """The network's fx graph, or None (with the reason in the log) where it cannot be traced."""
    try:
        return fx.symbolic_trace(model)
    except Exception as err:  # fx raises many kinds (TraceError, TypeError, ...)
        log.warning("torch.fx cannot trace %s (%s: %s); it runs whole per variant",
                    type(model).__name__, type(err).__name__, err)
        return None


def _out_features(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def _calls(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in gm.graph.nodes if n.op == "call_module"
            and isinstance(gm.get_submodule(n.target), WEIGHT_LAYERS)]


def _norm_of(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """The UNIT_NORMS module that is the only user of `node`'s output, with one feature per unit."""
    users = list(node.users)
    if len(users) != 1 or users[0].op != "call_module":
        return None
    norm = gm.get_submodule(users[0].target)
    layer = gm.get_submodule(node.target)
    if isinstance(norm, UNIT_NORMS) and norm.num_features == _out_features(layer):
        return users[0].target
    return None


def layer_table(model: nn.Module, example: torch.Tensor | None = None,
                traced: fx.GraphModule | None = None) -> list[Layer]:
    """The weight layers in the order the forward pass first calls them.

    From the traced graph (`traced`, the result of `traced()`, where the caller
    has it); for a network fx cannot trace, from a forward pass of `example`
    with hooks (no norms are found then), or, without an example, in
    registration order (logged).
    """
    gm = traced if traced is not None else trace(model)
    modules = dict(model.named_modules())
    if gm is not None:
        seen: dict[str, str | None] = {}
        for node in _calls(gm):
            seen.setdefault(node.target, _norm_of(gm, node))
        order = list(seen.items())
    elif example is not None:
        called: list[str] = []
        hooks = [m.register_forward_pre_hook(lambda m, a, name=name: called.append(name))
                 for name, m in modules.items() if isinstance(m, WEIGHT_LAYERS)]
        try:
            with torch.no_grad():
                model.eval()(example)
        finally:
            for h in hooks:
                h.remove()
        order = [(name, None) for name in dict.fromkeys(called)]
    else:
        log.warning("no example input for the untraceable %s: layers in registration order",
                    type(model).__name__)
        order = [(name, None) for name, m in modules.items() if isinstance(m, WEIGHT_LAYERS)]
    return [Layer(name, type(modules[name]).__name__,
                  sum(p.numel() for p in modules[name].parameters(recurse=False)),
                  _out_features(modules[name]), norm) for name, norm in order]


@dataclass
class Cut:
    """The network cut in front of one weight layer (see the module docstring):
    `prefix(x)` returns the values, the layer's input first; `tail(layer(values[0]),
    *values)` is the network's output."""

    prefix: fx.GraphModule
    layer: nn.Module
    tail: fx.GraphModule
    path: str  # the layer's module path (its parameters are `{path}.weight` in the model)
    inputs: list[fx.Node]  # the nodes of the original graph that the values are
    output: fx.Node  # the layer's node (its shape in meta[SHAPE])
    reads_input: bool  # whether the tail reads the layer's input (values[0]) too

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        values = self.prefix(x)
        return self.tail(self.layer(values[0]), *values)


def _depends(nodes: list[fx.Node], start: fx.Node) -> set[fx.Node]:
    """`start` and every node that reads it, directly or not."""
    out = {start}
    for n in nodes:
        if any(a in out for a in n.all_input_nodes):
            out.add(n)
    return out


def _ancestors(targets: list[fx.Node], stop: set[fx.Node]) -> set[fx.Node]:
    """Every node the targets are computed from, the targets included, not crossing `stop`."""
    out, todo = set(), list(targets)
    while todo:
        n = todo.pop()
        if n in out:
            continue
        out.add(n)
        todo += [a for a in n.all_input_nodes if a not in stop]
    return out


def _is_batch(node: fx.Node) -> bool:
    """Whether the node is a value per input (a parameter of 3 rows is not)."""
    if node.op == "get_attr":
        return False
    shape = node.meta.get(SHAPE)
    return shape is not None and len(shape) > 0 and shape[0] == _EXAMPLE_BATCH


def traced(model: nn.Module, input_shape: tuple[int, ...]) -> fx.GraphModule:
    """The network's graph with every node's shape from one example pass (for `cut`).

    `input_shape` is one input without the batch; the example pass tells the
    batch values (which a prefix hands over) from sizes and parameters (which
    a tail recomputes). Raises ValueError where fx cannot trace the network.
    """
    gm = trace(model)
    if gm is None:
        raise Uncuttable(f"{type(model).__name__} cannot be traced by torch.fx; expected a "
                         "network without data-dependent control flow (it runs whole per variant)")
    _bind_defaults(gm)
    _functionalise(gm)
    first = next(model.parameters())
    example = torch.zeros(_EXAMPLE_BATCH, *input_shape, dtype=first.dtype, device=first.device)
    was_training = model.training
    with torch.no_grad():
        _Shapes(gm.eval()).run(example)
    return gm.train(was_training)


SHAPE = "lesion_shape"  # a node's output shape in the example pass (None: not a tensor)


class _Shapes(fx.Interpreter):
    """Record each node's output shape in `node.meta[SHAPE]` from one example pass.

    torch.fx's ShapeProp records the same (and more), but its first use
    imports torch's symbolic-shape machinery: 1.1 s of every job's start,
    a tenth of a sweep on the default study; shapes are all the cut needs.
    """

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        n.meta[SHAPE] = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        return out


def _bind_defaults(gm: fx.GraphModule) -> None:
    """Bind every input after the first to its default (timm's `attn_mask=None`): lesion
    calls a network with its images alone, so these are constants of the graph."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node in inputs[1:]:
        if not node.args:
            raise ValueError(f"{type(gm).__name__}.forward takes a second input {node.target!r} "
                             "without a default; expected a network called with its images alone")
        default = node.args[0]
        for user in list(node.users):
            user.args = fx.node.map_arg(user.args, lambda a, node=node, d=default: d if a is node else a)
            user.kwargs = fx.node.map_arg(user.kwargs,
                                          lambda a, node=node, d=default: d if a is node else a)
        gm.graph.erase_node(node)
    gm.recompile()


def _in_place(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether `node` writes into its first argument: x.add_(y), ReLU(inplace=True),
    F.relu(x, inplace=True). (fx traces `out += y` as an out-of-place add already.)"""
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.endswith("__")
    if node.op == "call_module":
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
    return node.op == "call_function" and node.kwargs.get("inplace") is True


def _functionalise(gm: fx.GraphModule) -> None:
    """Make the graph's data flow explicit and free of writes in place.

    A sweep hands a prefix's values to the tail of every variant, so nothing
    may write into them; and an in-place write is a dependency the graph does
    not show (`kept.add_(y)` then `left(kept)` reads the sum). Each write in
    place becomes its out-of-place twin, and every later reader of the written
    value reads the write's result instead. In-place modules are replaced in
    `gm` (not in the network) by copies with inplace=False.
    """
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    for node in list(gm.graph.nodes):
        if not _in_place(gm, node) or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        written = node.args[0]
        for user in list(written.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(written, node)
        if node.op == "call_method":
            node.target = node.target[:-1]
        elif node.op == "call_module":
            *parent, leaf = node.target.split(".")
            owner = gm.get_submodule(".".join(parent))
            twin = copy.copy(getattr(owner, leaf))  # a parameterless activation
            twin.inplace = False
            setattr(owner, leaf, twin)
        else:
            node.kwargs = {**node.kwargs, "inplace": False}
    gm.recompile()


def _layer_node(gm: fx.GraphModule, path: str) -> fx.Node:
    """The one call of weight layer `path` in the graph (ValueError, Uncuttable otherwise)."""
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == path]
    if not isinstance(dict(gm.named_modules()).get(path), WEIGHT_LAYERS):
        raise ValueError(unknown_layer(path, [n.target for n in _calls(gm)]))
    if len(calls) != 1:
        raise Uncuttable(f"layer {path!r} is called {len(calls)} times in the forward pass (shared "
                         "weights); expected a layer called once (it runs whole per variant)")
    return calls[0]


def _partition(gm: fx.GraphModule, first: fx.Node, tail: set[fx.Node], given: list[fx.Node],
               ) -> tuple[list[fx.Node], fx.GraphModule, fx.GraphModule]:
    """The graph in two: `tail` (nodes, the output among them) runs after the rest.

    Returns (handed, prefix, tail): `prefix(x)` computes the values `handed`
    (`first`, then every other batch value the tail reads from before it, in
    graph order); the tail graph takes `given` (nodes the caller computes,
    e.g. the perturbed layer's output) and then the handed values. What the
    tail reads that is not a batch value (a size, a parameter read with
    get_attr, a constant) is recomputed in the tail from its own inputs.
    """
    nodes = list(gm.graph.nodes)
    modules = dict(gm.named_modules())
    inside = tail | set(given)
    handed: list[fx.Node] = [first]
    recomputed: set[fx.Node] = set()
    todo = [a for n in nodes if n in tail for a in n.all_input_nodes if a not in inside][::-1]
    while todo:
        n = todo.pop()
        if n in recomputed or n in handed:
            continue
        if _is_batch(n) or n.op == "placeholder":
            handed.append(n)
        else:
            recomputed.add(n)
            todo += list(n.all_input_nodes)
    position = {n: i for i, n in enumerate(nodes)}
    handed[1:] = sorted(handed[1:], key=position.__getitem__)  # in graph order: reproducible

    prefix_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    needed = _ancestors(handed, stop=set())
    for n in nodes:
        if n in needed:
            env[n] = prefix_graph.node_copy(n, lambda a: env[a])
    prefix_graph.output(tuple(env[n] for n in handed))

    tail_graph = fx.Graph()
    tenv = {n: tail_graph.placeholder(f"given{i}" if i else "layer_output")
            for i, n in enumerate(given)}
    for i, n in enumerate(handed):
        tenv[n] = tail_graph.placeholder(f"value{i}")
    used: dict[str, object] = {}
    for n in nodes:
        if n in tenv or n.op == "placeholder" or (n not in tail and n not in recomputed):
            continue
        if n.op == "output":
            tail_graph.output(fx.node.map_arg(n.args[0], lambda a: tenv[a]))
            continue
        tenv[n] = tail_graph.node_copy(n, lambda a: tenv[a])
        if n.op == "call_module":
            used[n.target] = modules[n.target]
        elif n.op == "get_attr":
            used[n.target] = operator.attrgetter(n.target)(gm)
    return (handed, fx.GraphModule(gm, prefix_graph, class_name="Prefix"),
            fx.GraphModule(_root(used), tail_graph, class_name="Tail"))


def cut(model: nn.Module | fx.GraphModule, path: str, input_shape: tuple[int, ...] = ()) -> Cut:
    """The network cut in front of its weight layer at module path `path` (see Cut).

    `model` is a network (traced here, see `traced` for `input_shape`) or the
    result of `traced`, to cut one network at many layers. Raises ValueError
    where the network cannot be traced, `path` is not one of its weight
    layers, or the layer is called more than once (shared weights).
    """
    gm = model if isinstance(model, fx.GraphModule) else traced(model, input_shape)
    target = _layer_node(gm, path)
    if len(target.args) != 1 or target.kwargs:
        raise ValueError(f"layer {path!r} is called with {len(target.args)} arguments; expected one")
    nodes = list(gm.graph.nodes)
    after = _depends(nodes, target)
    if nodes[-1] not in after:
        raise ValueError(f"layer {path!r} does not reach the network's output")
    handed, prefix, tail = _partition(gm, target.args[0], after - {target}, [target])
    reads_input = any(n.op == "placeholder" and n.name == "value0" and n.users
                      for n in tail.graph.nodes)
    return Cut(prefix.train(gm.training), gm.get_submodule(path), tail.train(gm.training), path,
               handed, target, reads_input)


# Maps that act on each value alone (elementwise, or per channel as a norm does): a
# layer's neurons are its output after every such map that follows it (activations).
ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh,
                       nn.Sigmoid, nn.Hardtanh, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
                       nn.Dropout, nn.Identity)
ELEMENTWISE_FUNCTIONS = (torch.relu, torch.sigmoid, torch.tanh, nn.functional.relu,
                         nn.functional.relu6, nn.functional.leaky_relu, nn.functional.elu,
                         nn.functional.gelu, nn.functional.silu, nn.functional.hardtanh,
                         nn.functional.sigmoid, nn.functional.tanh, nn.functional.dropout)
ELEMENTWISE_METHODS = ("relu", "sigmoid", "tanh")


def _elementwise(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in ELEMENTWISE_METHODS


def neurons(gm: fx.GraphModule, path: str) -> fx.Node:
    """The node of layer `path`'s neurons: its output after every elementwise map that
    alone reads it (ReLU, BatchNorm, dropout, ...), where a crash fault strikes."""
    node = _layer_node(gm, path)
    while len(node.users) == 1 and _elementwise(gm, next(iter(node.users))):
        node = next(iter(node.users))
    return node


@dataclass
class After:
    """The network cut after a node (a layer's neurons): `prefix(x)` returns the values,
    the node's first; `tail(*values)` is the network's output."""

    prefix: fx.GraphModule
    tail: fx.GraphModule
    shapes: list[tuple[int, ...]]  # of each value, per input (without the batch)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(*self.prefix(x))


def cut_after(gm: fx.GraphModule, node: fx.Node) -> After:
    """The graph (from `traced`) cut right after `node` (see After)."""
    nodes = list(gm.graph.nodes)
    handed, prefix, tail = _partition(gm, node, _depends(nodes, node) - {node}, [])
    shapes = [n.meta[SHAPE][1:] for n in handed]
    return After(prefix.train(gm.training), tail.train(gm.training), shapes)


def _batch_inputs(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if _is_batch(a) or a.op == "placeholder"]


def is_chain(gm: fx.GraphModule) -> bool:
    """Whether no operation of the graph merges two batch values (a residual add, a
    concatenation of branches, attention's product of queries and keys)."""
    return all(len(_batch_inputs(n)) <= 1 for n in gm.graph.nodes if n.op != "output")


def unknown_layer(name: str, layers: list[str]) -> str:
    """The message for a layer name the network does not have, with the nearest names."""
    near = difflib.get_close_matches(name, layers, n=3, cutoff=0.5)
    hint = f"; did you mean {near}?" if near else ""
    return (f"{name!r} is not a weight layer of the network{hint} expected one of "
            f"{layers[:12]}{' ...' if len(layers) > 12 else ''}")


def _root(used: dict[str, object]) -> nn.Module:
    """A module holding exactly `used` (submodules and tensors) at their paths."""
    root = nn.Module()
    for path, thing in sorted(used.items(), key=lambda kv: kv[0].count(".")):
        *parents, leaf = path.split(".")
        owner = root
        for part in parents:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        if isinstance(thing, nn.Module):
            owner.add_module(leaf, thing)
        elif isinstance(thing, nn.Parameter):
            owner.register_parameter(leaf, thing)
        else:
            owner.register_buffer(leaf, thing)
    return root


# --- the cut as the sweep engine's (prefix, suffix) -------------------------------------------
#
# The engine caches one tensor per image (the prefix's output) and runs an
# nn.Sequential suffix whose first stages hold the varied parameters. Where a
# cut hands over the layer's input alone, that is the layer's input and the
# suffix is (layer, tail): the engine's stacked schemes (one wide convolution,
# one product per variant) apply. Where it hands over more (skip connections,
# branches), the values are packed per image into one flat row; the suffix's
# first stage (PackedLayer) unpacks them and runs the layer, the second the tail.


def _pack(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.flatten(1) for v in values], dim=1)


def _unpack(packed: torch.Tensor, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Contiguous, as the network's own values are: some kernels (BatchNorm's) take another,
    differently rounded path on strided inputs."""
    sizes = [math.prod(s) for s in shapes]
    return [part.reshape(-1, *s).contiguous()
            for part, s in zip(packed.split(sizes, dim=1), shapes, strict=True)]


class _Prefix(nn.Module):
    """x -> the cut's values: the layer's input alone, or every value packed per image."""

    def __init__(self, prefix: fx.GraphModule, packed: bool):
        super().__init__()
        self.graph, self.packed = prefix, packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = self.graph(x)
        return _pack(list(values)) if self.packed else values[0]


class PackedLayer(nn.Module):
    """Packed values -> the layer's output and the values, packed."""

    def __init__(self, layer: nn.Module, shapes: list[tuple[int, ...]]):
        super().__init__()
        self.layer, self.shapes = layer, shapes

    def unpack(self, packed: torch.Tensor) -> list[torch.Tensor]:
        return _unpack(packed, self.shapes)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        """The layer's output packed in front of the values: [layer(values[0]), packed]."""
        return torch.cat([self.layer(self.unpack(packed)[0]).flatten(1), packed], dim=1)


class _Tail(nn.Module):
    """The values, packed (or the one value alone) -> the network's output."""

    def __init__(self, tail: fx.GraphModule, shapes: list[tuple[int, ...]] | None):
        super().__init__()
        self.graph, self.shapes = tail, shapes

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.shapes is None:
            return self.graph(h)
        return self.graph(*_unpack(h, self.shapes))


def _drop_unused_inputs(gm: fx.GraphModule) -> fx.GraphModule:
    for node in [n for n in gm.graph.nodes if n.op == "placeholder" and not n.users]:
        gm.graph.erase_node(node)
    gm.recompile()
    return gm


def split(model: nn.Module | fx.GraphModule, path: str,
          input_shape: tuple[int, ...] = ()) -> tuple[nn.Module, nn.Sequential, str]:
    """(prefix, suffix, the layer's path inside suffix), as models.split: suffix(prefix(x))
    is the network's output and nothing in prefix depends on the layer."""
    gm = model if isinstance(model, fx.GraphModule) else traced(model, input_shape)
    c = cut(gm, path)
    shapes = [n.meta[SHAPE][1:] for n in c.inputs]
    alone = len(shapes) == 1 and not c.reads_input
    if alone:
        tail = _Tail(_drop_unused_inputs(c.tail), None)
        return _Prefix(c.prefix, False), nn.Sequential(c.layer, tail), "0"
    out_shape = c.output.meta[SHAPE][1:]
    suffix = nn.Sequential(PackedLayer(c.layer, shapes), _Tail(c.tail, [out_shape, *shapes]))
    return _Prefix(c.prefix, True), suffix, "0.layer"


def split_after(gm: fx.GraphModule, node: fx.Node,
                ) -> tuple[nn.Module, nn.Module, tuple[int, ...], bool]:
    """(prefix, suffix, the node's shape per input, packed): suffix(prefix(x)) is the
    network's output, prefix(x) the node's value alone or, where the rest of the network
    reads more (a skip connection), packed first with the other values (`_pack`)."""
    a = cut_after(gm, node)
    packed = len(a.shapes) > 1
    return (_Prefix(a.prefix, packed), _Tail(a.tail, a.shapes if packed else None),
            a.shapes[0], packed)


def tail_modules(suffix: nn.Module) -> list[nn.Module] | None:
    """The modules a suffix (from `split_after`, or an nn.Sequential) calls, in order, where
    it is a chain of module calls on the one value (a Sequential network's); else None."""
    if type(suffix) is nn.Sequential:
        chains = [tail_modules(m) if type(m) in (nn.Sequential, _Tail) else [m] for m in suffix]
        return None if None in chains else [m for chain in chains for m in chain]
    if not isinstance(suffix, _Tail) or suffix.shapes is not None:
        return None
    out = []
    for node in suffix.graph.graph.nodes:
        if node.op == "call_module":
            out.append(suffix.graph.get_submodule(node.target))
        elif node.op not in ("placeholder", "output"):
            return None
    return out
