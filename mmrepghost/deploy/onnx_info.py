"""What an ONNX graph says: tensor shapes, constant values, node attributes.

:func:`annotate_shapes` writes every tensor's (symbolic) shape into the graph, which lets
onnxruntime fuse more; :func:`static_shapes` and :func:`tensor_shapes` give the concrete shapes
at one input size, for passes and tools that need channel counts or FLOPs;
:func:`constant_values` and :func:`node_attribute` read the constants and attributes.
"""
import copy
from typing import Any, Dict, Sequence, Tuple

import numpy as np


def annotate_shapes(proto):
    """A copy of ``proto`` (ModelProto) with every tensor's shape in ``graph.value_info``.

    The shapes come from onnxruntime's symbolic shape inference: dynamic dimensions become
    expressions of the input's (``floor(height/2 + 1/2)``...), so two tensors of equal shape
    carry equal dimensions. onnxruntime's graph optimizer needs that to fuse a residual Add
    into the conv before it (its NCHWc ``Conv`` + ``Sum``): plain ``torch.onnx.export``
    output leaves the dimensions after every strided conv unknown, and half of RepGhostNet's
    adds unfused (docs/benchmarks/profile.md). The function is unchanged; the graph stays
    dynamic in batch, height and width. ``RuntimeError`` naming the first tensor whose shape
    could not be inferred.
    """
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    # the steps of SymbolicShapeInference.infer_shapes, which on failure also saves the
    # half-inferred model into the working directory (sym_shape_infer_temp.onnx)
    inference = SymbolicShapeInference(int_max=2**31 - 1, auto_merge=True,
                                       guess_output_rank=False, verbose=0)
    inference._preprocess(proto)
    complete = False
    while inference.run_:
        complete = inference._infer_impl()
    inference._update_output_from_vi()
    if not complete:
        def inferred(name):
            info = inference.known_vi_.get(name)
            return info is not None and info.type.tensor_type.HasField('shape')

        missing = next((out for node in inference.out_mp_.graph.node for out in node.output
                        if out and not inferred(out)), '?')
        raise RuntimeError(f'symbolic shape inference stopped at tensor {missing!r}')
    return inference.out_mp_


def static_shapes(proto, shape: Sequence[int]):
    """A copy of ``proto`` with its (first) input fixed to ``shape``, every shape inferred."""
    import onnx
    proto = copy.deepcopy(proto)
    del proto.graph.value_info[:]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for dim, size in zip(dims, shape):
        dim.Clear()
        dim.dim_value = int(size)
    for output in proto.graph.output:
        output.type.tensor_type.ClearField('shape')
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


def tensor_shapes(proto) -> Dict[str, Tuple[int, ...]]:
    """{tensor name: shape} of every fully known value, input, output and initializer."""
    shapes = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    for value in (*proto.graph.input, *proto.graph.value_info, *proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField('dim_value') for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    return shapes


def constant_values(graph) -> Dict[str, np.ndarray]:
    """{tensor: array} of the initializers, the Constant nodes and Identity nodes of either."""
    from onnx import helper, numpy_helper
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == 'Constant' and node.attribute[0].name == 'value':
            found[node.output[0]] = numpy_helper.to_array(
                helper.get_attribute_value(node.attribute[0]))
        elif node.op_type == 'Identity' and node.input[0] in found:
            found[node.output[0]] = found[node.input[0]]
    return found


def node_attribute(node, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name``, or ``default`` when it has none."""
    from onnx import helper
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name),
                default)
