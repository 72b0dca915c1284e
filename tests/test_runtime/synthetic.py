"""Small end-to-end ONNX graphs with the exporter's contract, built with ``onnx.helper``.

* detection: ``input`` (N, 3, H, W) -> ``dets`` (N, K, 5) / ``labels`` (N, K): the boxes are
  :data:`REL_BOXES` times the input's (W, H, W, H); scores ``sigmoid(mean(input) * SCORE_W +
  SCORE_B)``; the last row is padding (score 0, label -1);
* instance segmentation: the same + ``masks`` (N, K, M, M), :data:`MASKS` for every image;
* classification: ``probs`` = softmax(global average pool @ CLS_W + CLS_B) (or ``logits``);
* raw: input ``images``, outputs ``cls_score_0``/``bbox_pred_0`` (a non end-to-end export).

Each comes with ``metadata_props`` and (``sidecar=True``) its sidecar, through the runtime's
own :func:`write_sidecar`.
"""
import uuid

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from mmrepghost_runtime.sidecar import Sidecar, sidecar_path, write_sidecar

CLASSES = ('disc', 'triangle', 'rectangle')
#: boxes relative to the input's width/height (x1, y1, x2, y2); the last row is padding
REL_BOXES = np.array([[0.10, 0.20, 0.50, 0.60],
                      [0.30, 0.05, 0.95, 0.40],
                      [0.60, 0.50, 1.00, 1.00],
                      [0.00, 0.00, 0.00, 0.00]], np.float32)
LABELS = np.array([0, 2, 1, -1], np.int64)
SCORE_W = np.array([0.5, -0.25, 1.0, 0.0], np.float32)
SCORE_B = np.array([2.0, 1.0, -0.5, 0.0], np.float32)
VALID = np.array([1, 1, 1, 0], np.float32)
M = 28
_yy, _xx = np.mgrid[0:M, 0:M].astype(np.float32) + 0.5
MASKS = np.stack([
    1 / (1 + np.exp(((_xx - 14) ** 2 + (_yy - 14) ** 2 - 100) / 10)),  # a soft disc
    np.clip(_xx / M, 0, 1),  # a left-to-right ramp
    (_xx < 14).astype(np.float32),  # the left half
    np.zeros((M, M), np.float32),
]).astype(np.float32)
CLS_W = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0], [-0.5, 0.5, 1.5]], np.float32)
CLS_B = np.array([0.1, -0.2, 0.3], np.float32)

DET_PREPROCESS = {
    'color_order': 'rgb',
    'resize': {'type': 'keep_ratio', 'scale': [320, 320], 'backend': 'cv2',
               'interpolation': 'bilinear'},
    'center_crop': None,
    'mean': [123.675, 116.28, 103.53], 'std': [58.395, 57.12, 57.375],
    'pad_divisor': 32, 'pad_value': 0.0, 'nan_padding': False,
}
CLS_PREPROCESS = {
    'color_order': 'rgb',
    'resize': {'type': 'resize_edge', 'edge': 'short', 'scale': 72, 'backend': 'pillow',
               'interpolation': 'bicubic'},
    'center_crop': [64, 64],
    'mean': [123.675, 116.28, 103.53], 'std': [58.395, 57.12, 57.375],
    'pad_divisor': 1, 'pad_value': 0.0, 'nan_padding': False,
}
DET_POSTPROCESS = {'score_thr': 0.05, 'iou_threshold': 0.5, 'nms_pre': 1000,
                   'max_per_img': 4}
OUTPUTS = {'detection': ['dets', 'labels'], 'instance_segmentation': ['dets', 'labels', 'masks'],
           'classification': ['probs'], 'logits': ['logits'], 'raw': ['cls_score_0',
                                                                      'bbox_pred_0']}


def _const(name, array):
    return helper.make_node('Constant', [], [name], value=numpy_helper.from_array(
        np.asarray(array), name))


def _image_input(name='input'):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                         ['batch', 3, 'height', 'width'])


def _detection_nodes(masks: bool):
    k = len(REL_BOXES)
    nodes = [
        _const('rel_boxes', REL_BOXES), _const('hw_index', np.array([2, 3], np.int64)),
        _const('whwh_index', np.array([1, 0, 1, 0], np.int64)),
        _const('score_w', SCORE_W[None]), _const('score_b', SCORE_B[None]),
        _const('valid', VALID[None]), _const('zero', np.array(0, np.float32)),
        _const('labels_const', LABELS[None]), _const('axis0', np.array([0], np.int64)),
        _const('axis2', np.array([2], np.int64)),
        helper.make_node('Shape', ['input'], ['shape']),
        helper.make_node('Gather', ['shape', 'hw_index'], ['hw']),
        helper.make_node('Cast', ['hw'], ['hw_f'], to=TensorProto.FLOAT),
        helper.make_node('Gather', ['hw_f', 'whwh_index'], ['whwh']),
        helper.make_node('Mul', ['rel_boxes', 'whwh'], ['boxes']),  # (K, 4)
        helper.make_node('ReduceMean', ['input'], ['mean4'], axes=[1, 2, 3], keepdims=1),
        helper.make_node('Flatten', ['mean4'], ['mean'], axis=1),  # (N, 1)
        helper.make_node('Mul', ['mean', 'score_w'], ['logit_w']),
        helper.make_node('Add', ['logit_w', 'score_b'], ['logit']),
        helper.make_node('Sigmoid', ['logit'], ['sig']),
        helper.make_node('Mul', ['sig', 'valid'], ['scores']),  # (N, K)
        helper.make_node('Mul', ['mean', 'zero'], ['zeros2']),  # (N, 1)
        helper.make_node('Unsqueeze', ['zeros2', 'axis2'], ['zeros3']),  # (N, 1, 1)
        helper.make_node('Unsqueeze', ['boxes', 'axis0'], ['boxes1']),  # (1, K, 4)
        helper.make_node('Add', ['boxes1', 'zeros3'], ['boxes_n']),  # (N, K, 4)
        helper.make_node('Unsqueeze', ['scores', 'axis2'], ['scores3']),
        helper.make_node('Concat', ['boxes_n', 'scores3'], ['dets'], axis=2),
        helper.make_node('Cast', ['zeros2'], ['zeros_i'], to=TensorProto.INT64),
        helper.make_node('Add', ['zeros_i', 'labels_const'], ['labels']),
    ]
    outputs = [helper.make_tensor_value_info('dets', TensorProto.FLOAT, ['batch', k, 5]),
               helper.make_tensor_value_info('labels', TensorProto.INT64, ['batch', k])]
    if masks:
        nodes += [_const('masks_const', MASKS[None]), _const('axis3', np.array([3], np.int64)),
                  helper.make_node('Unsqueeze', ['zeros3', 'axis3'], ['zeros4']),
                  helper.make_node('Add', ['masks_const', 'zeros4'], ['masks'])]
        outputs.append(helper.make_tensor_value_info('masks', TensorProto.FLOAT,
                                                     ['batch', k, M, M]))
    return nodes, outputs


def _classifier_nodes(probs: bool):
    name = 'probs' if probs else 'logits'
    nodes = [
        _const('cls_w', CLS_W), _const('cls_b', CLS_B),
        helper.make_node('GlobalAveragePool', ['input'], ['pooled']),
        helper.make_node('Flatten', ['pooled'], ['flat'], axis=1),
        helper.make_node('MatMul', ['flat', 'cls_w'], ['mm']),
        helper.make_node('Add', ['mm', 'cls_b'], ['logits' if not probs else 'raw_logits']),
    ]
    if probs:
        nodes.append(helper.make_node('Softmax', ['raw_logits'], ['probs'], axis=-1))
    return nodes, [helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                 ['batch', len(CLASSES)])]


def _raw_nodes():
    nodes = [_const('two', np.array(2, np.float32)), _const('one', np.array(1, np.float32)),
             helper.make_node('Mul', ['images', 'two'], ['cls_score_0']),
             helper.make_node('Add', ['images', 'one'], ['bbox_pred_0'])]
    shape = ['batch', 3, 'height', 'width']
    return nodes, [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
                   for n in ('cls_score_0', 'bbox_pred_0')]


def build_graph(kind: str, metadata=None) -> onnx.ModelProto:
    """The ModelProto of ``kind`` (detection, instance_segmentation, classification, logits,
    raw) with ``metadata`` as its metadata_props."""
    if kind in ('detection', 'instance_segmentation'):
        nodes, outputs = _detection_nodes(kind == 'instance_segmentation')
        inputs = [_image_input()]
    elif kind in ('classification', 'logits'):
        nodes, outputs = _classifier_nodes(kind == 'classification')
        inputs = [_image_input()]
    elif kind == 'raw':
        nodes, outputs = _raw_nodes()
        inputs = [_image_input('images')]
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, f'synthetic_{kind}', inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                              producer_name='mmrepghost-tests')
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model)
    return model


def sidecar_dict(kind: str, export_id: str, classes=CLASSES, **overrides) -> dict:
    """The sidecar dict of a synthetic model of ``kind``; ``overrides`` replace top-level keys."""
    task = 'classification' if kind == 'logits' else kind
    d = {
        'format': 'mmrepghost.deploy/1',
        'task': task,
        'export_id': export_id,
        'input': 'input',
        'outputs': OUTPUTS[kind],
        'classes': list(classes),
        'preprocess': dict(CLS_PREPROCESS if task == 'classification' else DET_PREPROCESS),
        'postprocess': {} if task == 'classification' else dict(
            DET_POSTPROCESS, **({'mask_thr_binary': 0.5}
                                if task == 'instance_segmentation' else {})),
        'source': {'config': 'configs/synthetic.py', 'checkpoint': 'synthetic.pth',
                   'checkpoint_sha256': '0' * 64},
    }
    d.update(overrides)
    return d


def make_model(directory, kind: str = 'detection', name: str = 'model', sidecar: bool = True,
               export_id: str = None, metadata=None, **sidecar_overrides) -> str:
    """Write ``directory/name.onnx`` (+ ``name.json``) and return the model path."""
    export_id = export_id or uuid.uuid4().hex
    task = 'classification' if kind == 'logits' else kind
    if metadata is None and kind != 'raw':
        metadata = {'mmrepghost.export_id': export_id, 'mmrepghost.task': task,
                    'mmrepghost.num_classes': str(len(CLASSES))}
    path = f'{directory}/{name}.onnx'
    onnx.save(build_graph(kind, metadata), path)
    if sidecar and kind != 'raw':
        d = sidecar_dict(kind, export_id, **sidecar_overrides)
        write_sidecar(Sidecar.from_dict(d), sidecar_path(path))
    return path


def expected_detections(batch: np.ndarray):
    """(dets (N, K, 5), labels (N, K)) the detection graph returns for ``batch``."""
    n, _, h, w = batch.shape
    boxes = REL_BOXES * np.array([w, h, w, h], np.float32)
    mean = batch.reshape(n, -1).mean(1, dtype=np.float64)[:, None]
    scores = VALID / (1 + np.exp(-(mean * SCORE_W + SCORE_B)))
    dets = np.concatenate([np.broadcast_to(boxes, (n, ) + boxes.shape),
                           scores[..., None]], axis=2).astype(np.float32)
    return dets, np.broadcast_to(LABELS, (n, len(LABELS)))


def expected_probs(batch: np.ndarray) -> np.ndarray:
    """The classifier's probabilities for ``batch`` (float64)."""
    logits = batch.mean(axis=(2, 3), dtype=np.float64) @ CLS_W + CLS_B
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)
