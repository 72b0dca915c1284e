"""Zero-pad conv channels to the CPU's vector width: the same function, fewer layout kernels.

onnxruntime's NCHWc layout (x86, ``ORT_ENABLE_ALL``) computes convs in blocks of 16 channels
(AVX-512; 8 with AVX2). A tensor whose channel count is not a multiple of the block stays in
plain NCHW, with reorder kernels around the convs that read and write it; RepGhostNet's widths
are multiples of 4 (8, 20, 36, 60, 72, 100, ...). :func:`pad_channels` rounds each conv's output
channels up to a multiple with zero filters and zero biases and gives every layer reading them
zero weights for the new channels, so the outputs stay exactly those of the original graph.
Padding stops where channels would mix (Concat, Reshape, Slice, Softmax...) or leave the graph:
the conv whose padding would reach such an operator, or a graph output, keeps its width.
"""
import copy
from typing import Dict, FrozenSet, Set, Tuple

import numpy as np

from .onnx_info import constant_values, node_attribute, static_shapes, tensor_shapes

#: operators computed channel by channel that keep the padded channels finite, so the zero
#: weights reading them cancel them (the runtime's activations, the SE block's gate and
#: multiply, residual adds, spatial pools). Not Div: 0 / 0 in a padded channel is NaN, and
#: NaN times a zero weight is NaN in every real channel after it.
CHANNEL_WISE = ('Relu', 'Clip', 'LeakyRelu', 'HardSigmoid', 'HardSwish', 'Sigmoid', 'Identity',
                'Add', 'Sub', 'Mul', 'GlobalAveragePool', 'GlobalMaxPool', 'MaxPool',
                'AveragePool')


def _ceil(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


class _Plan:
    """Which tensors get how many channels, and the convs that caused each padding."""

    def __init__(self) -> None:
        self.width: Dict[str, int] = {}
        self.sources: Dict[str, FrozenSet[str]] = {}
        self.blocked: Set[str] = set()

    def pad(self, tensor: str, width: int, sources) -> None:
        self.width[tensor], self.sources[tensor] = width, frozenset(sources)

    def block(self, tensors) -> None:
        for tensor in tensors:
            self.blocked.update(self.sources.get(tensor, ()))


def _channels(proto) -> Dict[str, Tuple[int, int]]:
    """{tensor: (rank, channels: dim 1, 0 if unknown)} of every value with a known rank."""
    found = {t.name: (len(t.dims), t.dims[1] if len(t.dims) > 1 else 0)
             for t in proto.graph.initializer}
    for value in (*proto.graph.input, *proto.graph.value_info, *proto.graph.output):
        if value.type.tensor_type.HasField('shape'):
            dims = value.type.tensor_type.shape.dim
            found[value.name] = (len(dims), dims[1].dim_value if len(dims) > 1 else 0)
    return found


def _plan(proto, channels, shapes, constants, multiple: int, kept: Set[str]) -> _Plan:
    """Propagate padding through the graph in node order; record what blocks it."""
    plan = _Plan()
    for index, node in enumerate(proto.graph.node):
        key = node.name or f'#{index}'
        padded_in = [name for name in node.input if name in plan.width]
        if node.op_type == 'Conv' and node.input[1] in constants:
            cout = constants[node.input[1]].shape[0]
            group = node_attribute(node, 'group', 1)
            if group == 1:  # reads padded channels with zero weights; pads its own output
                if key not in kept and cout % multiple:
                    plan.pad(node.output[0], _ceil(cout, multiple), {key})
            elif group == cout == channels.get(node.input[0], (0, 0))[1] and padded_in:
                # depthwise: widened to its padded input
                plan.pad(node.output[0], plan.width[node.input[0]], plan.sources[node.input[0]])
            elif padded_in:
                plan.block(padded_in)
        elif node.op_type == 'Gemm' and padded_in:
            if (padded_in != [node.input[0]] or node_attribute(node, 'transA', 0)
                    or node.input[1] not in constants):
                plan.block(padded_in)
        elif node.op_type in CHANNEL_WISE and padded_in:
            rank = channels.get(node.output[0], (0, 0))[0]
            widths = {plan.width.get(name, channels[name][1]) for name in node.input
                      if channels.get(name, (0, 1))[0] == rank and channels[name][1] != 1}
            # (N, C) maps; padded against unpadded or unknown channels
            if rank < 3 or len(widths) != 1 or 0 in widths:
                plan.block(padded_in)
            else:
                sources = set().union(*(plan.sources[name] for name in padded_in))
                plan.pad(node.output[0], widths.pop(), sources)
        elif node.op_type == 'Flatten' and padded_in:  # (N, C, 1, 1) -> (N, C) only
            shape = shapes.get(node.input[0], ())
            if len(shape) == 4 and shape[2:] == (1, 1) and node_attribute(node, 'axis', 1) == 1:
                plan.pad(node.output[0], plan.width[node.input[0]],
                         plan.sources[node.input[0]])
            else:
                plan.block(padded_in)
        elif padded_in:
            plan.block(padded_in)
    plan.block(output.name for output in proto.graph.output)
    return plan


def pad_channels(proto, multiple: int = 16, probe_size: int = 64):
    """A copy of ``proto`` (ModelProto, any input size) computing the same function, with
    the output channels of every conv that can be padded rounded up to a multiple of
    ``multiple`` (zero filters and biases), the depthwise convs after them widened (groups
    too) and the convs and Gemms reading them given zero weights for the new channels.

    Channel counts come from shape inference at a ``probe_size`` square input. A conv keeps
    its width when its padded channels would reach an operator that is not channel-wise
    (:data:`CHANNEL_WISE`; Concat, Reshape, Slice...), meet an unpadded tensor of another
    width, or reach a graph output. Returns ``(padded proto, how many convs were padded)``.
    """
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 2:
        raise ValueError(f'multiple must be an int >= 2, got {multiple!r}')
    from onnx import numpy_helper
    proto = copy.deepcopy(proto)
    graph = proto.graph
    inputs = graph.input[0].type.tensor_type.shape.dim[1].dim_value or 3
    inferred = static_shapes(proto, (1, inputs, probe_size, probe_size))
    shapes, channels = tensor_shapes(inferred), _channels(inferred)
    constants = constant_values(graph)
    kept: Set[str] = set()
    while True:  # stop padding the convs that block; at most once per conv
        plan = _plan(proto, channels, shapes, constants, multiple, kept)
        if not plan.blocked:
            break
        kept |= plan.blocked
    arrays: Dict[str, np.ndarray] = {}

    def replace(node, slot: int, array: np.ndarray) -> None:
        name = f'{node.input[slot]}_pad{multiple}_{len(arrays)}'
        arrays[name] = array
        graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), name))
        node.input[slot] = name

    padded_convs = 0
    for node in graph.node:
        if node.op_type == 'Conv' and node.input[1] in constants:
            weight = constants[node.input[1]]
            cin = plan.width.get(node.input[0])
            cout = plan.width.get(node.output[0], weight.shape[0])
            depthwise = node_attribute(node, 'group', 1) > 1
            if depthwise and cin:
                for attribute in node.attribute:
                    if attribute.name == 'group':
                        attribute.i = cin
            elif cin:
                weight = _widen(weight, 1, cin)
            if cout != weight.shape[0]:
                padded_convs += not depthwise
                if len(node.input) > 2 and node.input[2]:
                    replace(node, 2, _widen(constants[node.input[2]], 0, cout))
            if weight is not constants[node.input[1]] or cout != weight.shape[0]:
                replace(node, 1, _widen(weight, 0, cout))
        elif node.op_type == 'Gemm' and node.input[0] in plan.width:
            axis = 1 if node_attribute(node, 'transB', 0) else 0
            replace(node, 1, _widen(constants[node.input[1]], axis, plan.width[node.input[0]]))
    del graph.value_info[:]  # the widths changed; shape inference writes them anew
    used = {name for node in graph.node for name in node.input}
    kept_initializers = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept_initializers)
    return proto, padded_convs


def _widen(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    pad = [(0, 0)] * array.ndim
    pad[axis] = (0, size - array.shape[axis])
    return np.pad(array, pad)
