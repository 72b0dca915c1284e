"""Which part of an ONNX graph is the network (quantizable) and which is pre/post-processing.

The network is every weighted layer (``Conv``, ``Gemm``, ``MatMul``) and the feature-map
operators on paths between two of them (activations, residual adds, concats, pools, resizes,
SE multiplies). Paths through anything else (``TopK``, ``NonMaxSuppression``, ``RoiAlign``,
``Gather``, the padding reader's ``IsNaN``/``Where``...) are cut, so box decoding, score
filtering and NMS of the end-to-end graphs stay fp32, and so does a two-stage detector's RPN
post-processing between its RPN head and its RoI head.
"""
from collections import defaultdict
from typing import Dict, List, Set

__all__ = ['WEIGHTED_OPS', 'FEATURE_OPS', 'network_nodes', 'weighted_nodes', 'not_deployed']

WEIGHTED_OPS = ('Conv', 'Gemm', 'MatMul')
FEATURE_OPS = ('Relu', 'Clip', 'LeakyRelu', 'HardSigmoid', 'HardSwish', 'Sigmoid', 'Add', 'Mul',
               'Concat', 'Split', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'ReduceMean',
               'Resize', 'Flatten', 'Reshape', 'Identity')


def _edges(graph):
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
    producer, consumers = _edges(graph)
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
