"""End-to-end graphs (decoding + NMS inside) against mmdet's/mmpretrain's own predict."""
import json
import os
import os.path as osp

import numpy as np
import onnx
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.config import Config

from mmrepghost.deploy import build_model, reparameterize_model, save_deployed
from mmrepghost.deploy.end2end import end2end_module, export_graph
from mmrepghost.deploy.onnx import RawOutputs, export_end2end
from mmrepghost.deploy.preprocess_spec import preprocess_spec
from tests.conftest import REPO_ROOT, calibrate_bn_, load_tool, spread_head_scores_

ONE_STAGE = {
    'retinanet': 'configs/retinanet/repghost_1_0x_tiny-coco.py',
    'fcos': 'configs/fcos/repghost_1_0x.py',
    'atss': 'configs/atss/repghost_1_0x.py',
}
CLASSIFIER = 'configs/cls/repghost_1_0x_tiny-imagenet.py'
SHAPES = ('disc', 'triangle', 'rectangle')


def deployed(config, **cfg_changes):
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    cfg.merge_from_dict(cfg_changes)
    cfg.model.backbone.init_cfg = None  # no ImageNet weights here
    model = build_model(cfg)
    model.init_weights()
    calibrate_bn_(RawOutputs(model), (2, 3, 96, 96))
    reparameterize_model(model, logger='silent')
    if hasattr(model, 'bbox_head'):
        spread_head_scores_(model)
    return model.eval(), cfg


def mmdet_predict(model, x, img_shapes=None):
    """mmdet's predictions (input coordinates) for a batch of images of ``img_shapes``
    (default: each fills the batch) padded with zeros to ``x``'s size."""
    samples = []
    for i in range(x.shape[0]):
        sample = DetDataSample()
        shape = tuple(x.shape[2:]) if img_shapes is None else img_shapes[i]
        sample.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=tuple(x.shape[2:]),
                                 batch_input_shape=tuple(x.shape[2:]), scale_factor=(1.0, 1.0)))
        samples.append(sample)
    with torch.no_grad():
        return [s.pred_instances for s in model.predict(x, samples, rescale=False)]


def run_backend(path, x, backend):
    if backend == 'onnxruntime':
        import onnxruntime as ort
        session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
        return dict(zip([o.name for o in session.get_outputs()],
                        session.run(None, {'input': x.numpy()})))
    import openvino as ov
    compiled = ov.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
    result = compiled(x.numpy())
    return {out.get_any_name(): np.asarray(result[out]) for out in compiled.outputs}


def assert_same_detections(got, reference, score_atol=1e-4):
    for image, ref in enumerate(reference):
        labels = got['labels'][image]
        count = int((labels >= 0).sum())
        assert count == len(ref.scores) > 0
        assert (labels[count:] == -1).all() and (got['dets'][image, count:] == 0).all()
        np.testing.assert_array_equal(labels[:count], ref.labels.numpy())
        np.testing.assert_allclose(got['dets'][image, :count, 4], ref.scores.numpy(),
                                   atol=score_atol)
        np.testing.assert_allclose(got['dets'][image, :count, :4], ref.bboxes.numpy(),
                                   atol=1e-2)  # pixels; float32 exp/cancellation of big boxes


@pytest.mark.parametrize('kind', sorted(ONE_STAGE))
def test_one_stage_graph_equals_mmdet_predict(tmp_path, kind):
    """RetinaNet, FCOS, ATSS: ONNX (onnxruntime and OpenVINO) vs mmdet's predict, batch 2 at
    another size than the export's; nms_pre is reached and ~100 detections an image survive."""
    model, _ = deployed(ONE_STAGE[kind])
    cfg = model.bbox_head.test_cfg  # ATSS: NMS at IoU 0.6, the others 0.5
    cfg.nms_pre = 300
    module = end2end_module(model)
    assert module.baked_test_cfg == dict(score_thr=0.05, iou_threshold=cfg.nms.iou_threshold,
                                         nms_pre=300, max_per_img=100)
    path = str(tmp_path / f'{kind}.onnx')
    export_graph(module, path, torch.zeros(1, 3, 256, 256), module.output_names)
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {'NonMaxSuppression', 'TopK'} <= ops and 'BatchNormalization' not in ops
    assert all(node.domain in ('', 'ai.onnx') for node in onnx.load(path).graph.node)
    x = torch.randn(2, 3, 192, 288, generator=torch.Generator().manual_seed(1)) * 0.5
    reference = mmdet_predict(model, x)
    for backend in ('onnxruntime', 'openvino'):
        got = run_backend(path, x, backend)
        assert got['dets'].shape == (2, 100, 5) and got['labels'].dtype == np.int64
        assert_same_detections(got, reference)


def test_nan_padding_clips_each_image_to_its_own_size(tmp_path):
    """A batch of two sizes: NaN marks the smaller image's padding, and the graph clips its
    boxes to its own size before NMS, as mmdet does with each image's img_shape."""
    model, _ = deployed(ONE_STAGE['retinanet'])
    module = end2end_module(model)
    path = str(tmp_path / 'r.onnx')
    export_graph(module, path, torch.zeros(1, 3, 128, 128), module.output_names)
    x = torch.randn(2, 3, 224, 256, generator=torch.Generator().manual_seed(3)) * 0.5
    x[1, :, 150:] = 0
    x[1, :, :, 170:] = 0
    reference = mmdet_predict(model, x, [(224, 256), (150, 170)])
    marked = x.clone()
    marked[1, :, 150:] = float('nan')
    marked[1, :, :, 170:] = float('nan')
    for backend in ('onnxruntime', 'openvino'):
        got = run_backend(path, marked, backend)
        assert_same_detections(got, reference)
    assert reference[1].bboxes[:, 2].max() <= 170 and reference[1].bboxes[:, 3].max() <= 150
    # zero padding (mmdeploy's convention) clips to the batch: some boxes reach past 170
    got = run_backend(path, x, 'onnxruntime')
    assert got['dets'][1, :, 2].max() > 170


def test_score_threshold_and_padding_rows(tmp_path):
    """A high score_thr leaves few detections: the rest of each row is zeros and label -1, and
    an image with none at all still gives a well-formed (K, 5) block."""
    model, _ = deployed(ONE_STAGE['retinanet'])
    x = torch.randn(2, 3, 160, 128, generator=torch.Generator().manual_seed(2)) * 0.5
    x[1] = 0
    model.bbox_head.test_cfg.score_thr = 0.0
    scores = [p.scores for p in mmdet_predict(model, x)]
    # image 0 keeps 20, image 1 another number (midway: no float32 tie at the threshold)
    threshold = float(scores[0][19] + scores[0][20]) / 2
    model.bbox_head.test_cfg.score_thr = threshold
    module = end2end_module(model)
    path = str(tmp_path / 'r.onnx')
    export_graph(module, path, torch.zeros(1, 3, 128, 128), module.output_names)
    reference = mmdet_predict(model, x)
    assert len(reference[0].scores) == 20 and len(reference[1].scores) != 20
    got = run_backend(path, x, 'onnxruntime')
    for image in range(2):
        count = len(reference[image].scores)
        assert int((got['labels'][image] >= 0).sum()) == count
        assert (got['dets'][image, count:] == 0).all()
        assert (got['dets'][image, :count, 4] > threshold).all()


def test_classifier_probs_and_logits(tmp_path):
    model, _ = deployed(CLASSIFIER)
    x = torch.randn(3, 3, 64, 80)
    with torch.no_grad():
        logits = model(x, mode='tensor')
    for probs in (True, False):
        module = end2end_module(model, probs=probs)
        path = str(tmp_path / f'cls_{probs}.onnx')
        export_graph(module, path, torch.zeros(1, 3, 64, 64), module.output_names)
        got = run_backend(path, x, 'onnxruntime')
        name = 'probs' if probs else 'logits'
        assert list(got) == [name]
        expected = logits.softmax(-1) if probs else logits
        np.testing.assert_allclose(got[name], expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(got['logits'].sum(-1), logits.sum(-1).numpy(), atol=1e-4)


def test_preprocess_spec_of_shipped_configs():
    det = preprocess_spec(Config.fromfile(osp.join(REPO_ROOT, ONE_STAGE['retinanet'])))
    assert det == dict(color_order='rgb', center_crop=None, pad_divisor=32, pad_value=0.0,
                       resize=dict(type='keep_ratio', scale=[320, 320], backend='cv2',
                                   interpolation='bilinear'),
                       mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    paper = preprocess_spec(Config.fromfile(osp.join(REPO_ROOT, 'configs/retinanet/'
                                                     'repghost_1_3x.py')))
    assert paper['resize']['scale'] == [1333, 800]
    cls = preprocess_spec(Config.fromfile(osp.join(REPO_ROOT, CLASSIFIER)))
    assert cls['resize'] == dict(type='resize_edge', edge='short', scale=72, backend='pillow',
                                 interpolation='bicubic')
    assert cls['center_crop'] == [64, 64] and cls['pad_divisor'] == 1
    cfg = Config.fromfile(osp.join(REPO_ROOT, ONE_STAGE['retinanet']))
    cfg.test_dataloader.dataset.pipeline.insert(2, dict(type='RandomFlip', prob=0.5))
    with pytest.raises(ValueError, match=r"step 'RandomFlip' cannot be exported.*supported"):
        preprocess_spec(cfg)


@pytest.fixture(scope='module')
def shapes_retinanet(tmp_path_factory):
    """A deploy checkpoint (random weights) whose dataset_meta names 3 shape classes."""
    root = tmp_path_factory.mktemp('shapes_retinanet')
    model, cfg = deployed(ONE_STAGE['retinanet'], model=dict(bbox_head=dict(num_classes=3)))
    checkpoint, config = save_deployed(model, cfg, str(root / 'model_deploy.pth'),
                                       dict(dataset_meta=dict(classes=SHAPES)))
    return model, cfg, checkpoint, config


def test_export_end2end_writes_model_and_sidecar_together(tmp_path, shapes_retinanet):
    model, cfg, checkpoint, _ = shapes_retinanet
    path = str(tmp_path / 'model.onnx')
    sidecar = export_end2end(model, cfg, path, checkpoint, SHAPES, (1, 3, 128, 128))
    written = json.load(open(tmp_path / 'model.json'))
    assert written == sidecar.to_dict()
    assert written['task'] == 'detection' and written['classes'] == list(SHAPES)
    assert written['outputs'] == ['dets', 'labels'] and written['input'] == 'input'
    assert written['postprocess']['score_thr'] == 0.05
    assert written['source']['checkpoint_sha256'] == __import__('hashlib').sha256(
        open(checkpoint, 'rb').read()).hexdigest()
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta == {'mmrepghost.export_id': written['export_id'],
                    'mmrepghost.task': 'detection', 'mmrepghost.num_classes': '3'}
    # a second export never silently replaces; with overwrite it gets a new export id
    with pytest.raises(FileExistsError):
        export_end2end(model, cfg, path, checkpoint, SHAPES, (1, 3, 128, 128))
    again = export_end2end(model, cfg, path, checkpoint, SHAPES, (1, 3, 128, 128),
                           overwrite=True)
    assert again.export_id != sidecar.export_id
    # class names that do not fit the model: refused, nothing written
    other = str(tmp_path / 'other.onnx')
    with pytest.raises(ValueError, match=r'2 class names \(disc, triangle\) for a model with '
                       r'3 classes'):
        export_end2end(model, cfg, other, checkpoint, SHAPES[:2], (1, 3, 128, 128))
    assert sorted(os.listdir(tmp_path)) == ['model.json', 'model.onnx']


def test_export_tool_end2end(tmp_path, shapes_retinanet, capsys):
    _, _, checkpoint, config = shapes_retinanet
    tool = load_tool('export_onnx')
    out = str(tmp_path / 'det.onnx')
    assert tool.main([config, checkpoint, '--out', out, '--end2end', '--shape', '128', '160']) == 0
    printed = capsys.readouterr().out
    assert "baked into the graph: {'score_thr': 0.05, 'iou_threshold': 0.5, 'nms_pre': 1000, " \
           "'max_per_img': 100}" in printed
    assert "outputs ['dets', 'labels']" in printed and 'NonMaxSuppression 1' in printed
    assert printed.count('onnxruntime vs PyTorch') == 2
    assert osp.exists(tmp_path / 'det.json')
    # the sidecar is an output too: refused without --force
    os.remove(out)
    with pytest.raises(SystemExit):
        tool.main([config, checkpoint, '--out', out, '--end2end'])
    assert 'det.json exists; pass --force' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main([config, checkpoint, '--out', out, '--probs'])
    assert '--probs needs --end2end' in capsys.readouterr().err
