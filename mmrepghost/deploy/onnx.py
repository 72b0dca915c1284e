"""ONNX export of deployed classifiers, backbones and detectors, checked in onnxruntime.

Two kinds of graph. :func:`export_onnx` writes *raw* outputs, for checking and for users who
decode in PyTorch: classifier logits, or a detector's dense head maps (``bbox_head``, or the
``rpn_head`` of two-stage detectors) in the order ``cls_score_<level>..., bbox_pred_<level>...``,
decoded by mmdet's ``head.predict_by_feat``. :func:`export_end2end` writes the deployable graph
(:mod:`.end2end`: preprocessed batch in, ``dets``/``labels``[/``masks``] or ``probs`` out) and
its sidecar JSON, the description ``mmrepghost_runtime`` needs to run it without PyTorch.
"""
import hashlib
import importlib
import uuid
from collections import Counter
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ..utils import atomic_write
from .end2end import end2end_module, export_graph, run_batch
from .channel_padding import pad_channels
from .onnx_info import annotate_shapes, constant_values
from .preprocess_spec import preprocess_spec


def _flatten(outputs) -> List[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    return [t for item in outputs for t in _flatten(item)]


class RawOutputs(nn.Module):
    """``forward(images) -> tuple of tensors`` for a classifier, a backbone or a detector."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = getattr(model, 'rpn_head', None)
        if self.head is None:
            self.head = getattr(model, 'bbox_head', None)
        self.is_detector = hasattr(model, 'extract_feat') and self.head is not None

    def output_names(self, example: Tensor) -> List[str]:
        with torch.no_grad():
            outputs = self._raw(example)
        if self.is_detector:  # (cls_scores, bbox_preds[, ...]) per level
            return [f'{kind}_{level}' for kind, per_level in zip(
                ('cls_score', 'bbox_pred', 'centerness', 'extra'), outputs)
                for level in range(len(per_level))]
        return [f'output_{i}' for i in range(len(_flatten(outputs)))]

    def _raw(self, images: Tensor):
        if self.is_detector:
            return self.head(self.model.extract_feat(images))
        if hasattr(self.model, 'extract_feat'):  # mmpretrain classifier: logits
            return self.model(images, mode='tensor')
        return self.model(images)

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        return tuple(_flatten(self._raw(images)))


#: ``torch.onnx.export``'s exporters and the ONNX opsets each is tested with: the TorchScript
#: one (``dynamo=False``) and the dynamo one (``dynamo=True``, torch's default; needs onnxscript)
EXPORTER_OPSETS = {'torchscript': tuple(range(11, 21)), 'dynamo': tuple(range(18, 21))}
#: the opset used when none is given, per exporter
DEFAULT_OPSETS = {'torchscript': 17, 'dynamo': 18}
#: opsets of the default (TorchScript) exporter
ONNX_OPSETS = EXPORTER_OPSETS['torchscript']


def export_onnx(model: nn.Module, path: str, input_shape: Sequence[int],
                opset: Optional[int] = None, overwrite: bool = False,
                exporter: str = 'torchscript', annotate: bool = True,
                pad_channels_to: int = 0) -> List[str]:
    """Export ``model`` (eval mode) to ``path`` atomically; batch, height and width dynamic.

    ``input_shape`` is the example input (N, C, H, W); ``exporter`` one of
    :data:`EXPORTER_OPSETS` and ``opset`` one of its opsets (default :data:`DEFAULT_OPSETS`).
    ``annotate`` records every tensor's symbolic shape in the graph (:func:`annotate_shapes`);
    ``pad_channels_to`` (0: off) zero-pads conv channels to that multiple
    (:func:`.channel_padding.pad_channels`: the same function). Returns the output names.
    """
    if exporter not in EXPORTER_OPSETS:
        raise ValueError(f'exporter={exporter!r} is unknown; allowed: {list(EXPORTER_OPSETS)}')
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 4 or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(f'input_shape must be 4 positive ints (N, C, H, W), '
                         f'got {input_shape!r}')
    opsets = EXPORTER_OPSETS[exporter]
    opset = DEFAULT_OPSETS[exporter] if opset is None else opset
    if opset not in opsets:
        raise ValueError(f'opset={opset!r} is not supported; allowed: {opsets[0]}..{opsets[-1]} '
                         f'(exporter={exporter!r})')
    if exporter == 'dynamo':
        _require_onnxscript()
    wrapper = RawOutputs(model).eval()
    example = torch.randn(*input_shape)
    names = wrapper.output_names(example)
    import onnx
    with atomic_write(path, overwrite) as tmp, torch.no_grad():
        if exporter == 'dynamo':
            _export_dynamo(wrapper, example, tmp, opset, names)
        else:
            dynamic = {'images': {0: 'batch', 2: 'height', 3: 'width'}}
            dynamic.update({name: {0: 'batch'} for name in names})
            torch.onnx.export(wrapper, (example, ), tmp, dynamo=False, opset_version=opset,
                              input_names=['images'], output_names=names,
                              dynamic_axes=dynamic, do_constant_folding=True)
        proto = onnx.load(tmp)
        folded = fold_batch_flatten_reshapes(proto.graph)
        proto = prepare_for_runtime(proto, pad_channels_to, annotate)
        if folded or annotate or pad_channels_to:
            onnx.checker.check_model(proto)
            onnx.save(proto, tmp)
    return names


def _require_onnxscript() -> None:
    try:
        importlib.import_module('onnxscript')
    except ImportError as error:
        raise ImportError("exporter='dynamo' needs the onnxscript package: pip install onnxscript "
                          '(pinned: pip install -c requirements/constraints.txt '
                          '-r requirements/deploy.txt)') from error


def _export_dynamo(wrapper: nn.Module, example: Tensor, path: str, opset: int,
                   names: List[str]) -> None:
    """``torch.onnx.export(dynamo=True)``: ``torch.export`` with symbolic batch, height, width.

    ``external_data=False`` keeps the weights in the one file (torch's default writes them to
    ``<path>.data``, which the atomic rename would leave behind under the temporary name).
    """
    dims = {axis: torch.export.Dim(name) for axis, name in ((0, 'batch'), (2, 'height'),
                                                            (3, 'width'))}
    torch.onnx.export(wrapper, (example, ), path, dynamo=True, opset_version=opset,
                      input_names=['images'], output_names=names,
                      dynamic_shapes={'images': dims}, external_data=False, verbose=False)


def prepare_for_runtime(proto, pad_channels_to: int = 0, annotate: bool = True):
    """The graph passes every export ends with, in order: conv channels zero-padded to
    ``pad_channels_to`` (0: off; :func:`.channel_padding.pad_channels`), then every tensor's
    symbolic shape recorded (:func:`.onnx_info.annotate_shapes`), so the recorded shapes
    are the padded ones. Returns the new ModelProto."""
    if pad_channels_to:
        proto = pad_channels(proto, pad_channels_to)[0]
    return annotate_shapes(proto) if annotate else proto


def fold_batch_flatten_reshapes(graph) -> int:
    """Replace ``Reshape(x, Concat(Unsqueeze(Gather(Shape(t), 0)), [-1]))`` by ``Flatten``.

    That is how ``x.view(x.size(0), -1)`` (mmpretrain's GlobalAveragePooling) exports with a
    dynamic batch: a Concat of shape numbers. ``Flatten(axis=1)`` computes the same and keeps
    the deployed graph free of Concat nodes. Returns how many Reshapes were replaced; nodes
    left without consumers are removed.
    """
    import onnx
    producer = {out: node for node in graph.node for out in node.output}
    constants = constant_values(graph)

    def is_batch_size(name):
        unsqueeze = producer.get(name)
        gather = unsqueeze and producer.get(unsqueeze.input[0])
        shape = gather and producer.get(gather.input[0])
        return (unsqueeze is not None and unsqueeze.op_type == 'Unsqueeze'
                and gather is not None and gather.op_type == 'Gather'
                and shape is not None and shape.op_type == 'Shape'
                and constants.get(gather.input[1]) is not None
                and int(constants[gather.input[1]]) == 0)

    replaced = 0
    for index, node in enumerate(list(graph.node)):
        concat = producer.get(node.input[1]) if node.op_type == 'Reshape' else None
        if (concat is None or concat.op_type != 'Concat' or len(concat.input) != 2
                or not is_batch_size(concat.input[0])
                or constants.get(concat.input[1]) is None
                or constants[concat.input[1]].tolist() != [-1]):
            continue
        flatten = onnx.helper.make_node('Flatten', [node.input[0]], list(node.output),
                                        name=f'{node.name}_flatten', axis=1)
        graph.node.remove(node)
        graph.node.insert(index, flatten)
        replaced += 1
    _remove_dead_nodes(graph)
    return replaced


def _remove_dead_nodes(graph) -> None:
    needed = {out.name for out in graph.output}
    for node in reversed(list(graph.node)):
        if any(out in needed for out in node.output):
            needed.update(node.input)
        else:
            graph.node.remove(node)


def onnx_op_types(path: str) -> Counter:
    """How many nodes of each operator type the ONNX graph has."""
    import onnx
    return Counter(node.op_type for node in onnx.load(path).graph.node)


def compare_with_onnxruntime(model: nn.Module, path: str,
                             inputs: Sequence[Tensor]) -> List[Tuple[float, float]]:
    """``(max abs difference, max abs output)`` of onnxruntime vs PyTorch, per input."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    wrapper = RawOutputs(model).eval()
    diffs = []
    for x in inputs:
        with torch.no_grad():
            expected = wrapper(x)
        got = session.run(None, {'images': x.numpy()})
        diffs.append((max(float(np.abs(e.numpy() - g).max()) for e, g in zip(expected, got)),
                      max(float(e.abs().max()) for e in expected)))
    return diffs


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _num_classes(module: nn.Module, example_outputs: List[Tensor]) -> int:
    if module.output_names[0] in ('probs', 'logits'):
        return int(example_outputs[0].shape[-1])
    detector = module.detector
    head = detector.roi_head.bbox_head if hasattr(detector, 'roi_head') else detector.bbox_head
    return int(head.num_classes)


def export_end2end(model: nn.Module, cfg, path: str, checkpoint: str, classes: Sequence[str],
                   input_shape: Sequence[int] = (1, 3, 320, 320), overwrite: bool = False,
                   probs: bool = True, pad_channels_to: int = 0):
    """Export the deployed ``model`` end to end to ``path`` and its sidecar beside it.

    ``cfg`` gives the preprocessing (test pipeline and data preprocessor, see
    :func:`.preprocess_spec.preprocess_spec`), ``classes`` the class names (the checkpoint's
    ``dataset_meta``), ``checkpoint`` the source file whose hash the sidecar records;
    ``probs`` chooses a classifier's softmax ``probs`` over ``logits``; a detector's
    ``test_cfg`` (the model's, i.e. the config's) is baked in. Both files are written
    atomically, together, replaced only with ``overwrite``. The graph's ``metadata_props``
    and the sidecar share a fresh export id, so a runtime can tell a sidecar of another
    export. ``pad_channels_to`` as in :func:`export_onnx` (recorded in the graph's metadata);
    every tensor's symbolic shape is recorded (:func:`annotate_shapes`). Returns the runtime's
    ``Sidecar``.
    """
    import onnx
    from mmrepghost_runtime.sidecar import Sidecar, sidecar_path, write_sidecar
    module = end2end_module(model, probs)
    example = torch.zeros(*input_shape)
    with torch.no_grad():
        outputs = module(example)
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    num_classes = _num_classes(module, outputs)
    if len(classes) != num_classes:
        raise ValueError(f'{len(classes)} class names ({_preview(classes)}) for a model with '
                         f'{num_classes} classes: the names must come from its training set')
    names = list(module.output_names)
    task = ('classification' if names[0] in ('probs', 'logits') else
            'instance_segmentation' if 'masks' in names else 'detection')
    sidecar = Sidecar.from_dict(dict(
        format='mmrepghost.deploy/1', task=task, export_id=uuid.uuid4().hex, input='input',
        outputs=names, classes=list(classes),
        # detector graphs read each image's extent from NaN padding (end2end.split_padding)
        preprocess=dict(preprocess_spec(cfg), nan_padding=task != 'classification'),
        postprocess=module.baked_test_cfg,
        source=dict(config=getattr(cfg, 'filename', None) or '', checkpoint=checkpoint,
                    checkpoint_sha256=file_sha256(checkpoint))))
    metadata = {'mmrepghost.export_id': sidecar.export_id, 'mmrepghost.task': task,
                'mmrepghost.num_classes': str(num_classes)}
    if pad_channels_to:
        metadata['mmrepghost.channels_padded_to'] = str(pad_channels_to)
    with atomic_write(path, overwrite) as tmp:
        export_graph(module, tmp, example, names)
        proto = prepare_for_runtime(onnx.load(tmp), pad_channels_to)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, tmp)
        write_sidecar(sidecar, sidecar_path(path), overwrite)
    return sidecar


def _preview(classes: Sequence[str], limit: int = 4) -> str:
    shown = ', '.join(map(str, list(classes)[:limit]))
    return shown + (', ...' if len(classes) > limit else '')


def _detection_difference(expected: dict, got: dict, tie: float = 1e-5) -> float:
    """Largest difference of two sets of padded detections (rows sorted by score).

    The same number per image and the same scores are required; boxes, labels and masks are
    compared on rows whose score has no neighbour within ``tie`` (equal scores may come in
    either order, and NMS may keep either of two tied boxes). Other detections or labels
    count as infinite.
    """
    worst = 0.0
    for image in range(expected['labels'].shape[0]):
        count = int((expected['labels'][image] >= 0).sum())
        if count != int((got['labels'][image] >= 0).sum()):
            return float('inf')
        scores = expected['dets'][image, :count, 4]
        worst = max(worst, float(np.abs(scores - got['dets'][image, :count, 4]).max(
            initial=0)))
        gaps = np.abs(np.diff(scores))
        distinct = np.ones(count, bool)
        distinct[1:] &= gaps > tie
        distinct[:-1] &= gaps > tie
        if not np.array_equal(expected['labels'][image, :count][distinct],
                              got['labels'][image, :count][distinct]):
            return float('inf')
        for name in ('dets', 'masks'):
            if name in expected and distinct.any():
                worst = max(worst, float(np.abs(expected[name][image, :count][distinct]
                                                - got[name][image, :count][distinct]).max()))
    return worst


def compare_end2end(model: nn.Module, path: str, inputs: Sequence[Tensor],
                    probs: bool = True) -> List[Tuple[float, float]]:
    """``(max abs difference, max abs output)`` of an end-to-end file vs eager PyTorch, per
    input (detections: see :func:`_detection_difference`)."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    module = end2end_module(model, probs)
    names = [out.name for out in session.get_outputs()]
    results = []
    for x in inputs:
        expected = {name: out.numpy() for name, out in zip(module.output_names,
                                                           run_batch(module, x))}
        got = dict(zip(names, session.run(None, {'input': x.numpy()})))
        scale = max(float(np.abs(out).max(initial=0)) for name, out in expected.items()
                    if name != 'labels')
        if 'labels' in expected:
            results.append((_detection_difference(expected, got), scale))
        else:
            results.append((max(float(np.abs(expected[n] - got[n]).max()) for n in expected),
                            scale))
    return results
