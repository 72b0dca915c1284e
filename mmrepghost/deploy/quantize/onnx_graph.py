"""Which part of an ONNX graph is the network (quantizable) and which is pre/post-processing.

The network is every weighted layer (``Conv``, ``Gemm``, ``MatMul``) and the feature-map
operators on paths between two of them (activations, residual adds, concats, pools, resizes,
SE multiplies). Paths through anything else (``TopK``, ``NonMaxSuppression``, ``RoiAlign``,
``Gather``, the padding reader's ``IsNaN``/``Where``...) are cut, so box decoding, score
filtering and NMS of the end-to-end graphs stay fp32, and so does a two-stage detector's RPN
post-processing between its RPN head and its RoI head.
"""
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

from mmrepghost_runtime.sidecar import sidecar_path
from .common import QuantizeError, layer_kind

__all__ = ['WEIGHTED_OPS', 'FEATURE_OPS', 'network_nodes', 'weighted_nodes', 'not_deployed',
           'weight_shape', 'onnx_layer_kind', 'set_metadata', 'check_output_pair']

WEIGHTED_OPS = ('Conv', 'Gemm', 'MatMul')
FEATURE_OPS = ('Relu', 'Clip', 'LeakyRelu', 'HardSigmoid', 'HardSwish', 'Sigmoid', 'Add', 'Mul',
               'Concat', 'Split', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'ReduceMean',
               'Resize', 'Flatten', 'Reshape', 'Identity')


def graph_edges(graph):
    """``(producer, consumers)``: ``{tensor: its node}``, ``{tensor: [nodes reading it]}``."""
    producer: Dict[str, object] = {}
    consumers: Dict[str, List[object]] = defaultdict(list)
    for node in graph.node:
        for name in node.output:
            producer[name] = node
        for name in node.input:
            if name:
                consumers[name].append(node)
    return producer, consumers


def network_nodes(graph) -> List[str]:
    """Names of the network's nodes (see the module doc), in graph order.

    Every node must have a unique, non-empty name (as torch's exporters write them).
    """
    names = [node.name for node in graph.node]
    if '' in names or len(set(names)) != len(names):
        raise ValueError('the ONNX graph has unnamed or duplicate node names; export it with '
                         'tools/export_onnx.py')
    producer, consumers = graph_edges(graph)
    weighted = [node for node in graph.node if node.op_type in WEIGHTED_OPS]

    def walk(start, step) -> Set[str]:
        seen: Set[str] = set()
        stack = list(start)
        while stack:
            node = stack.pop()
            for nxt in step(node):
                if nxt.op_type in FEATURE_OPS and nxt.name not in seen:
                    seen.add(nxt.name)
                    stack.append(nxt)
        return seen

    def downstream(node):
        return [c for name in node.output for c in consumers.get(name, ())]

    def upstream(node):
        return [producer[name] for name in node.input if name in producer]

    between = walk(weighted, downstream) & walk(weighted, upstream)
    keep = between | {node.name for node in weighted}
    return [name for name in names if name in keep]


def weighted_nodes(graph) -> List[str]:
    """Names of the Conv/Gemm/MatMul nodes (those the per-layer decisions are about)."""
    return [node.name for node in graph.node if node.op_type in WEIGHTED_OPS]


def not_deployed(graph) -> List[str]:
    """Names of the nodes that show a training structure (``BatchNormalization``)."""
    return [node.name or node.output[0] for node in graph.node
            if node.op_type == 'BatchNormalization']


def weight_shape(graph, name: str) -> Optional[Tuple[int, ...]]:
    """The shape of the constant ``name`` (an initializer, through Identity/Constant nodes)."""
    producer = {o: node for node in graph.node for o in node.output}
    while name in producer and producer[name].op_type == 'Identity':
        name = producer[name].input[0]
    for tensor in graph.initializer:
        if tensor.name == name:
            return tuple(tensor.dims)
    node = producer.get(name)
    if node is not None and node.op_type == 'Constant':
        for attribute in node.attribute:
            if attribute.name == 'value':
                return tuple(attribute.t.dims)
    return None


def onnx_layer_kind(graph, node, out_shape: Sequence[int] = ()) -> str:
    """:func:`.common.layer_kind` of a Conv/Gemm/MatMul node (``out_shape``: its output's)."""
    attributes = {a.name: a for a in node.attribute}
    weight = (weight_shape(graph, node.input[1]) if len(node.input) > 1 else None) or ()
    if node.op_type in ('Gemm', 'MatMul') and len(weight) == 2 and not (
            'transB' in attributes and attributes['transB'].i):
        weight = (weight[1], weight[0])  # (in, out) stored: name it (out, in) like a conv
    group = attributes['group'].i if 'group' in attributes else 1
    strides = list(attributes['strides'].ints) if 'strides' in attributes else []
    return layer_kind(node.op_type, weight, group, strides, tuple(out_shape)[2:])


def set_metadata(model, values: Mapping[str, str]) -> None:
    """Set ``metadata_props`` entries of an ONNX model (others kept, in order)."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    for key, value in kept + list(values.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def check_output_pair(model_path: str, out: str, overwrite: bool, backend: str) -> None:
    """Refuse an output .onnx (+ its sidecar) that is not .onnx, would replace the model or
    its sidecar, or exists without ``overwrite``; ``FileNotFoundError`` for a missing model."""
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'{model_path}: no such model file')
    if osp.splitext(str(out))[1].lower() != '.onnx':
        raise QuantizeError(f'OUT {out!r}: the {backend} backend writes an .onnx file (QDQ) '
                            'and its sidecar .json beside it; give a path ending in .onnx')
    for path, what in ((model_path, 'MODEL'), (sidecar_path(model_path), "MODEL's sidecar")):
        for target in (out, sidecar_path(out)):
            if osp.abspath(target) == osp.abspath(path) or (
                    osp.exists(target) and osp.exists(path) and osp.samefile(target, path)):
                raise QuantizeError(f'OUT {out!r} would overwrite {what} ({path}); the input '
                                    'is never replaced: choose another output path')
    for target in (out, sidecar_path(out)):
        if osp.exists(target) and not overwrite:
            raise FileExistsError(f'{target} exists; pass --force to replace it')
