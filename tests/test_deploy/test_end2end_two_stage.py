"""End-to-end two-stage graphs (Faster R-CNN, Mask R-CNN) against mmdet's own ``predict``.

One ONNX file per detector, exported at 256x320 batch 1, checked in onnxruntime and OpenVINO
(f32: OpenVINO's CPU default is bf16 where the CPU has it) at other sizes, batch 1 and 2.
"""
import os.path as osp
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox2roi
from mmengine.config import Config

from mmrepghost.deploy import build_model, reparameterize_model
from mmrepghost.deploy.end2end import (END2END_OPSET, end2end_module, export_graph, run_batch,
                                       split_padding)
from mmrepghost.deploy.end2end_two_stage import (TwoStageDetector, _roi_layer_settings,
                                                 extract_roi_features)
from mmrepghost.deploy.onnx import RawOutputs
from tests.conftest import REPO_ROOT, calibrate_bn_

# config, test_cfg changes: an rcnn score_thr that leaves dozens of detections an image with
# random weights (Faster R-CNN: 100, 100 and 69 of max_per_img 100 in CHECKS, the NMS output
# is cut; Mask R-CNN: 81, 62, 48); Faster R-CNN's 256-channel heads run on 300 proposals to
# keep the file fast (Mask R-CNN keeps the config's 1000)
DETECTORS = {
    'faster_rcnn': ('configs/faster_rcnn/repghost_1_0x.py',
                    dict(rpn=dict(max_per_img=300), rcnn=dict(score_thr=0.077))),
    'mask_rcnn': ('configs/mask_rcnn/repghost_1_0x_tiny-coco.py',
                  dict(rcnn=dict(score_thr=0.065))),
}
EXPORT_SHAPE = (1, 3, 256, 320)
# (batch, height, width): neither the export's size
CHECKS = [(1, 320, 224), (2, 224, 320)]
BACKENDS = ('onnxruntime', 'openvino')


def deployed_detector(config, test_cfg):
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    if isinstance(cfg.model.backbone.get('init_cfg'), dict) and \
            cfg.model.backbone.init_cfg.type == 'Pretrained':
        cfg.model.backbone.init_cfg = None  # no ImageNet weights here
    cfg.model.backbone.norm_cfg = dict(type='BN')
    cfg.merge_from_dict(dict(model=dict(test_cfg=test_cfg)))
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    calibrate_bn_(RawOutputs(model), (2, 3, 96, 96))
    reparameterize_model(model, logger='silent')
    return model.eval()


def open_backend(path, backend):
    """``run(x) -> {output name: array}`` of the ONNX file in onnxruntime or OpenVINO (f32)."""
    if backend == 'onnxruntime':
        import onnxruntime as ort
        options = ort.SessionOptions()  # idle threads must not spin while PyTorch runs
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        names = [o.name for o in session.get_outputs()]
        return lambda x: dict(zip(names, session.run(None, {'input': x.numpy()})))
    import openvino as ov
    compiled = ov.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32',
                                                     'INFERENCE_NUM_THREADS': 1})
    return lambda x: {out.get_any_name(): np.asarray(value)
                      for out, value in compiled(x.numpy()).items()}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """Per detector: the deployed model, its end-to-end module and a runner per backend."""
    root = tmp_path_factory.mktemp('two_stage')
    out = {}
    for kind, (config, test_cfg) in DETECTORS.items():
        model = deployed_detector(config, test_cfg)
        module = end2end_module(model)
        path = str(root / f'{kind}.onnx')
        export_graph(module, path, torch.zeros(*EXPORT_SHAPE), module.output_names)
        out[kind] = dict(model=model, module=module, path=path,
                         run={b: open_backend(path, b) for b in BACKENDS})
    return out


def mmdet_predict(model, x):
    """``predict(rescale=False)`` with metas of the input's own size (scale factor 1)."""
    samples = []
    for _ in range(x.shape[0]):
        sample = DetDataSample()
        shape = tuple(x.shape[2:])
        sample.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                                 batch_input_shape=shape, scale_factor=(1.0, 1.0)))
        samples.append(sample)
    with torch.no_grad():
        return [s.pred_instances for s in model.predict(x, samples, rescale=False)]


def mask_head_probs(model, x, results):
    """mmdet's mask head on each image's predicted boxes: sigmoid of the label channel."""
    with torch.no_grad():
        feats = model.extract_feat(x)
        rois = bbox2roi([r.bboxes for r in results])
        preds = model.roi_head._mask_forward(feats, rois)['mask_preds']
    labels = torch.cat([r.labels for r in results])
    probs = preds[torch.arange(len(labels)), labels].sigmoid()
    return probs.split([len(r) for r in results])


def match_detections(dets, labels, ref, box_rtol=1e-3, score_atol=1e-4):
    """Row of ``dets``/``labels`` (one image) for each of mmdet's detections, and the padding.

    Both lists are sorted by score; rows are matched by label, box and score rather than by
    position so that two detections whose scores differ by less than the graph's rounding
    (~1e-6) may come in either order. Every detection must match once.
    """
    count = int((labels >= 0).sum())
    assert count == len(ref.scores), (count, len(ref.scores))
    assert (labels[count:] == -1).all() and (dets[count:] == 0).all()
    ref_boxes, ref_scores = ref.bboxes.numpy(), ref.scores.numpy()
    ref_labels = ref.labels.numpy()
    tol = box_rtol * np.maximum(np.abs(ref_boxes), 1.0)
    rows, free = [], np.ones(count, bool)
    for j in range(count):
        fits = free & (labels[:count] == ref_labels[j]) & (
            np.abs(dets[:count, 4] - ref_scores[j]) <= score_atol) & (
            np.abs(dets[:count, :4] - ref_boxes[j]) <= tol[j]).all(1)
        candidates = np.flatnonzero(fits)
        assert len(candidates), (f'detection {j} (label {ref_labels[j]}, score '
                                 f'{ref_scores[j]:.6f}, box {ref_boxes[j]}) has no match')
        row = j if j in candidates else candidates[0]
        free[row] = False
        rows.append(row)
    rows = np.array(rows, dtype=np.int64)
    for j in np.flatnonzero(rows != np.arange(count)):  # out of order only at equal scores
        assert abs(ref_scores[j] - ref_scores[rows[j]]) <= 1e-5, (j, rows[j], ref_scores)
    return rows


@pytest.mark.parametrize('kind', sorted(DETECTORS))
def test_graph_equals_mmdet_predict(exported, kind):
    """Same detections per image as mmdet (count, labels, boxes, scores) and, for Mask R-CNN,
    the mask head's probabilities of mmdet's boxes (and the same binary masks once pasted), in
    onnxruntime and OpenVINO, batch 1 and 2 at two sizes other than the export's."""
    entry = exported[kind]
    model, module = entry['model'], entry['module']
    gen = torch.Generator().manual_seed(1)
    for batch, height, width in CHECKS:
        x = torch.randn(batch, 3, height, width, generator=gen)
        reference = mmdet_predict(model, x)
        assert all(len(ref.scores) >= 10 for ref in reference), 'too few detections to compare'
        probs = mask_head_probs(model, x, reference) if module.with_mask else None
        for backend in BACKENDS:
            got = entry['run'][backend](x)
            assert list(got) == list(module.output_names)
            assert got['dets'].shape == (batch, module.max_per_img, 5)
            assert got['labels'].shape == (batch, module.max_per_img)
            assert got['labels'].dtype == np.int64 and got['dets'].dtype == np.float32
            for image, ref in enumerate(reference):
                rows = match_detections(got['dets'][image], got['labels'][image], ref)
                if module.with_mask:
                    check_masks(got['masks'][image], got['dets'][image], rows, probs[image],
                                ref.masks, module.max_per_img)


def check_masks(masks, dets, rows, probs, ref_masks, max_per_img):
    """The graph's masks of one image vs mmdet's mask head on mmdet's boxes (``probs``) and
    vs mmdet's pasted binary masks (pasted as mmdet pastes them: the same up to pixels at
    0.5 +- 1e-4)."""
    assert masks.shape == (max_per_img, 28, 28)
    assert (masks[len(rows):] == 0).all()
    np.testing.assert_allclose(masks[rows], probs.numpy(), atol=1e-4)
    height, width = ref_masks.shape[-2:]
    pasted, _ = _do_paste_mask(torch.from_numpy(masks[rows][:, None]),
                               torch.from_numpy(dets[rows, :4]), height, width,
                               skip_empty=False)
    differ = float(((pasted >= 0.5) != ref_masks).float().mean())
    assert differ <= 1e-4, differ


def test_eager_module_and_padding_proposals(exported):
    """The module in PyTorch (the graph's source) gives mmdet's detections too, on a 64x96
    image where the RPN keeps fewer than max_per_img proposals. The padding proposals (zero
    boxes) would pass a score_thr of 0.01 for many classes: their candidates are dropped."""
    model = exported['mask_rcnn']['model']
    model.roi_head.test_cfg.score_thr = 0.01
    try:
        module = TwoStageDetector(model, dict(model.test_cfg, rcnn=dict(
            model.test_cfg.rcnn, score_thr=0.01))).eval()
        x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            feats = model.extract_feat(x)
            _, extents = split_padding(x)
            proposals, valid = module.proposals(feats, extents)
            _, scores, _ = module.candidates(feats, proposals, valid, extents)
            _, unmasked, _ = module.candidates(feats, proposals, torch.ones_like(valid),
                                               extents)
        padding = ~valid[0]
        assert 0 < int(padding.sum()) < module.rpn_max_per_img
        scores, unmasked = scores.reshape(valid.shape + (-1, )), unmasked.reshape(
            valid.shape + (-1, ))
        assert (unmasked[0, padding] > 0.01).any()  # they would be candidates
        assert (scores[0, padding] == -1).all()
        assert torch.equal(scores[0, ~padding], unmasked[0, ~padding])
        dets, labels, _ = (t.numpy() for t in run_batch(module, x))
        reference = mmdet_predict(model, x)
    finally:
        model.roi_head.test_cfg.score_thr = DETECTORS['mask_rcnn'][1]['rcnn']['score_thr']
    match_detections(dets[0], labels[0], reference[0])


def test_graph_has_standard_ops_only(exported):
    for kind, entry in exported.items():
        graph = onnx.load(entry['path']).graph
        assert {node.domain for node in graph.node} <= {'', 'ai.onnx'}, kind
        ops = [node.op_type for node in graph.node]
        assert {'NonMaxSuppression', 'TopK', 'NonZero', 'RoiAlign'} <= set(ops), kind
        assert ops.count('NonMaxSuppression') == 2  # RPN and R-CNN
        # one RoiAlign per pyramid level and RoI extractor
        assert ops.count('RoiAlign') == 4 * (2 if kind == 'mask_rcnn' else 1), kind
        assert [o.name for o in graph.output] == list(entry['module'].output_names)
        dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
        assert dims[0] and dims[2] and dims[3], dims  # batch, height, width dynamic


def test_end2end_module_dispatch_and_outputs(exported):
    faster, mask = exported['faster_rcnn']['module'], exported['mask_rcnn']['module']
    assert isinstance(faster, TwoStageDetector) and isinstance(mask, TwoStageDetector)
    assert faster.output_names == ('dets', 'labels')
    assert mask.output_names == ('dets', 'labels', 'masks')
    assert (mask.rpn_nms_pre, mask.rpn_max_per_img, mask.rpn_iou_thr) == (1000, 1000, 0.7)
    assert mask.baked_test_cfg == dict(score_thr=0.065, iou_threshold=0.5, max_per_img=100,
                                       mask_thr_binary=0.5)
    assert 'mask_thr_binary' not in faster.baked_test_cfg
    model = exported['faster_rcnn']['model']
    cascade_like = SimpleNamespace(rpn_head=model.rpn_head, roi_head=torch.nn.Module(),
                                   test_cfg=model.test_cfg)
    with pytest.raises(TypeError, match='supports StandardRoIHead'):
        TwoStageDetector(cascade_like)
    with pytest.raises(ValueError, match="plain 'nms' only"):
        TwoStageDetector(exported['faster_rcnn']['model'], dict(
            rpn=dict(nms=dict(type='nms', iou_threshold=0.7), max_per_img=10),
            rcnn=dict(nms=dict(type='soft_nms', iou_threshold=0.5), max_per_img=10)))


class _RoiFeatures(torch.nn.Module):
    def __init__(self, extractor):
        super().__init__()
        self.extractor = extractor
        self.settings = _roi_layer_settings(extractor)

    def forward(self, f0, f1, f2, f3, rois):
        return extract_roi_features(self.extractor, self.settings, (f0, f1, f2, f3), rois)


def test_roi_features_match_mmcv_roi_align(tmp_path):
    """Per-level RoiAlign (torchvision, ONNX RoiAlign half_pixel) + scatter-back equals mmdet's
    SingleRoIExtractor with mmcv's RoIAlign: rois on all four levels, then with levels empty,
    in PyTorch, onnxruntime and OpenVINO."""
    extractor = MODELS.build(dict(
        type='SingleRoIExtractor', out_channels=8, featmap_strides=[4, 8, 16, 32],
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0)))
    gen = torch.Generator().manual_seed(5)
    feats = [torch.randn(2, 8, 160 // s, 224 // s, generator=gen) for s in (4, 8, 16, 32)]

    def rois(n, low, high):
        size = torch.rand(n, 2, generator=gen) * (high - low) + low
        corner = torch.rand(n, 2, generator=gen) * (torch.tensor([224.0, 160.0]) - size / 2)
        image = torch.randint(0, 2, (n, 1), generator=gen).float()
        return torch.cat([image, corner, corner + size], 1)

    spread = rois(120, 2, 700)  # sqrt(area) over 56 * (1 .. 8+): every level used
    small = rois(30, 1, 100)  # levels 0 and 1 only
    module = _RoiFeatures(extractor).eval()
    levels = extractor.map_roi_levels(spread, 4)
    assert set(levels.tolist()) == {0, 1, 2, 3}
    assert set(extractor.map_roi_levels(small, 4).tolist()) <= {0, 1}
    path = str(tmp_path / 'roi.onnx')
    names = ['f0', 'f1', 'f2', 'f3', 'rois']
    with torch.no_grad():
        torch.onnx.export(module, (*feats, spread), path, dynamo=False,
                          opset_version=END2END_OPSET, input_names=names,
                          output_names=['roi_feats'],
                          dynamic_axes={'rois': {0: 'n'}, 'roi_feats': {0: 'n'}})
    import onnxruntime as ort
    import openvino as ov
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    compiled = ov.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    for boxes in (spread, small):
        with torch.no_grad():
            expected = extractor(tuple(feats), boxes)  # mmcv RoIAlign, aligned=True
            eager = module(*feats, boxes)
        assert float((eager - expected).abs().max()) <= 1e-5
        feed = dict(zip(names, [t.numpy() for t in (*feats, boxes)]))
        got_ort = session.run(None, feed)[0]
        got_ov = np.asarray(compiled(feed)[compiled.outputs[0]])
        np.testing.assert_allclose(got_ort, expected.numpy(), atol=1e-5)
        np.testing.assert_allclose(got_ov, expected.numpy(), atol=1e-5)
