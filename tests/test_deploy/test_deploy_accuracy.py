"""The exported file's accuracy: ``tools/deploy_test.py`` vs ``mim test`` of the same checkpoint.

No trained model is needed to make this sensitive: the validation set is labelled by the
PyTorch model itself (mmdet's ``inference_detector`` / mmpretrain's inferencer, one image at a
time), so ``mim test`` scores high, and any difference of the PyTorch-free runtime (image
reading, resize, normalization, padding, decoding, NMS, rescaling, mask pasting) costs
accuracy. A sidecar with a wrong resize is shown to cost it. Non-square and grayscale images
are in every set; the runtime runs batch 1 and 4 (mim test: the config's batch).
The real trained tiny RetinaNet is compared the same way by ``make demo``.
"""
import glob
import json
import os
import os.path as osp
import re
import shutil

import cv2
import pytest
import torch
from mmengine.config import Config

from mmrepghost.deploy import build_model, reparameterize_model, save_deployed
from mmrepghost.deploy.onnx import RawOutputs
from mmrepghost.deploy.preprocess_spec import preprocess_spec
from tests.conftest import (REPO_ROOT, calibrate_bn_, load_tool, mim, run_tool_without_torch,
                            spread_head_scores_)

SHAPES = ('disc', 'triangle', 'rectangle')
DETECTORS = {
    'retinanet': ('configs/retinanet/repghost_1_0x_tiny-coco.py',
                  'bbox_head=dict(num_classes=3), test_cfg=dict(max_per_img=5)'),
    'mask_rcnn': ('configs/mask_rcnn/repghost_1_0x_tiny-coco.py',
                  'roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)), '
                  'test_cfg=dict(rcnn=dict(max_per_img=5))'),
}
USER_CONFIG = """_base_ = '{base}'
data_root = '{data}'
classes = {classes!r}
dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
model = dict({model})
train_dataloader = dict(dataset=dataset)
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False, dataset=dataset)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
"""


def metric(text: str, key: str) -> float:
    return float(re.findall(rf'{re.escape(key)}: ([0-9.]+)', text)[-1])


def to_grayscale(paths):
    for path in paths:  # 1-channel files: the runtime and mmcv both read them as 3 channels
        cv2.imwrite(path, cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY))


def val_batch(cfg: Config, images) -> torch.Tensor:
    """``images`` preprocessed as the config's test pipeline does (the runtime's, identical)."""
    from mmrepghost_runtime import preprocess, read_image
    batch, _ = preprocess([read_image(path)[0] for path in images],
                          dict(preprocess_spec(cfg), nan_padding=False))
    return torch.from_numpy(batch)


def deploy_random_model(cfg: Config, work: str, classes, images) -> tuple:
    """A deploy checkpoint + its deploy config: random weights, BN statistics of ``images``
    (real activations stay O(1)), a dense head whose scores spread as a trained one's."""
    cfg.model.backbone.init_cfg = None
    model = build_model(cfg)
    model.init_weights()
    batch = val_batch(cfg, images)
    calibrate_bn_(RawOutputs(model), inputs=batch)
    if hasattr(model, 'bbox_head') or hasattr(model, 'roi_head'):
        spread_head_scores_(model, inputs=batch)
    reparameterize_model(model, logger='silent')
    return save_deployed(model, cfg, osp.join(work, 'model_deploy.pth'),
                         dict(dataset_meta=dict(classes=tuple(classes))))


def relabel_coco(predictions: str, data: str) -> None:
    """Replace the val annotations by the predictions ``mim test --out`` dumped.

    The configs keep 5 detections an image (``max_per_img``): all of them become ground
    truth, so ``mim test`` at that batch size scores 1.0 and nothing the runtime gets wrong
    goes unnoticed. (Labelled at the batch size evaluated: an untrained network's ranking
    of near-equal scores changes with the batch's padding.)
    """
    import pickle

    import pycocotools.mask as mask_utils
    ann_file = osp.join(data, 'annotations/instances_val2017.json')
    coco = json.load(open(ann_file))
    annotations = []
    for sample in pickle.load(open(predictions, 'rb')):
        pred = sample['pred_instances']
        for k, (box, label) in enumerate(zip(pred['bboxes'].tolist(), pred['labels'].tolist())):
            x1, y1, x2, y2 = box
            ann = dict(id=len(annotations) + 1, image_id=sample['img_id'],
                       category_id=label + 1, bbox=[x1, y1, x2 - x1, y2 - y1],
                       area=(x2 - x1) * (y2 - y1), iscrowd=0)
            if 'masks' in pred:
                rle = pred['masks'][k]
                ann['segmentation'] = dict(size=rle['size'], counts=rle['counts'].decode())
                ann['area'] = float(mask_utils.area(rle))
            annotations.append(ann)
    coco['annotations'] = annotations
    with open(ann_file, 'w') as f:
        json.dump(coco, f)


def run_deploy_test(capsys, config, model, *args) -> str:
    assert load_tool('deploy_test').main([config, model, *args]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.parametrize('kind', sorted(DETECTORS))
def test_detector_deploy_test_equals_mim_test(tmp_path, capsys, kind):
    work, data = str(tmp_path / 'work'), str(tmp_path / 'shapes') + '/'
    os.makedirs(work)
    load_tool('make_tiny_coco').main(['--out', data, '--train', '2', '--val', '8',
                                      '--categories', 'shapes'])
    to_grayscale(sorted(map(str, (tmp_path / 'shapes' / 'val2017').glob('*.jpg')))[:3])
    base, model_options = DETECTORS[kind]
    config = str(tmp_path / f'{kind}_shapes.py')
    with open(config, 'w') as f:
        f.write(USER_CONFIG.format(base=osp.join(REPO_ROOT, base), data=data, classes=SHAPES,
                                   model=model_options))
    checkpoint, deploy_config = deploy_random_model(
        Config.fromfile(config), work, SHAPES, sorted(glob.glob(data + 'val2017/*.jpg')))

    def mim_test(batch, *extra):
        return mim('test', 'mmdet', deploy_config, '--checkpoint', checkpoint, '--work-dir',
                   str(tmp_path / 'test'), '--cfg-options',
                   f'test_dataloader.batch_size={batch}', *extra, cwd=str(tmp_path))

    mim_test(4, '--out', str(tmp_path / 'predictions.pkl'))
    relabel_coco(str(tmp_path / 'predictions.pkl'), data)
    keys = ['coco/bbox_mAP'] + (['coco/segm_mAP'] if kind == 'mask_rcnn' else [])
    reference = {batch: {key: metric(log, key) for key in keys}
                 for batch, log in ((b, mim_test(b)) for b in ('1', '4'))}
    assert reference['4'] == {key: 1.0 for key in keys}, reference

    onnx_file = str(tmp_path / f'{kind}.onnx')
    assert load_tool('export_onnx').main([config, checkpoint, '--out', onnx_file, '--end2end',
                                          '--shape', '320', '320']) == 0
    capsys.readouterr()
    tolerance = {'coco/bbox_mAP': 0.005, 'coco/segm_mAP': 0.01}
    for backend, batch in (('onnxruntime', '1'), ('onnxruntime', '4'), ('openvino', '4')):
        line = run_deploy_test(capsys, config, onnx_file, '--backend', backend,
                               '--batch-size', batch)
        assert line.startswith(f'deploy_test ({backend}, batch {batch})'), line
        for key, value in reference[batch].items():
            assert abs(metric(line, key) - value) <= tolerance[key], (backend, batch, line,
                                                                      reference)
    # the file in the PyTorch-free tool: the same detections as deploy_test's runtime
    from mmrepghost_runtime import load_model, read_image
    images = sorted(glob.glob(data + 'val2017/*.jpg'))[:3]  # grayscale, non-square
    result = run_tool_without_torch('deploy_infer', onnx_file, *images, '--out-dir',
                                    str(tmp_path / 'drawn'), '--score-thr', '0')
    assert result.returncode == 0, result.stderr
    expected = load_model(onnx_file).predict([read_image(p)[0] for p in images])
    for path, prediction in zip(images, expected):
        assert f'{osp.basename(path)}: {len(prediction)} detections' in result.stdout
        assert osp.getsize(tmp_path / 'drawn' / osp.basename(path)) > 0
    if kind == 'retinanet':  # the check is sensitive: a sidecar resizing to 256 loses mAP
        wrong = str(tmp_path / 'wrong.onnx')
        shutil.copy(onnx_file, wrong)
        sidecar = json.load(open(osp.splitext(onnx_file)[0] + '.json'))
        sidecar['preprocess']['resize']['scale'] = [256, 256]
        json.dump(sidecar, open(osp.splitext(wrong)[0] + '.json', 'w'))
        line = run_deploy_test(capsys, config, wrong, '--batch-size', '4')
        assert metric(line, 'coco/bbox_mAP') < 0.9, line


def test_classifier_deploy_test_equals_mim_test(tmp_path, capsys):
    from mmpretrain.apis import ImageClassificationInferencer
    data = str(tmp_path / 'tiny_imagenet')
    load_tool('make_tiny_imagenet').main(['--out', data, '--train', '1', '--val', '5'])
    val = sorted(map(str, (tmp_path / 'tiny_imagenet' / 'val').glob('*.JPEG')))
    to_grayscale(val[:4])
    for path in val[4:8]:  # non-square images: the short edge is resized, then center-cropped
        image = cv2.imread(path)
        cv2.imwrite(path, cv2.resize(image, (image.shape[1] + 23, image.shape[0])))
    config = osp.join(REPO_ROOT, 'configs/cls/repghost_1_0x_tiny-imagenet.py')
    options = [f'data_root={data}', f'train_dataloader.dataset.data_root={data}',
               f'val_dataloader.dataset.data_root={data}',
               f'test_dataloader.dataset.data_root={data}']
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(o.split('=', 1) for o in options))
    checkpoint, deploy_config = deploy_random_model(cfg, str(tmp_path), cfg.classes, val)
    # label the val set with the PyTorch model's own top-1
    inferencer = ImageClassificationInferencer(deploy_config, pretrained=checkpoint,
                                               device='cpu')
    labels = [r['pred_label'] for r in inferencer(val, batch_size=len(val))]
    assert len(set(labels)) > 1
    with open(osp.join(data, 'meta/val.txt'), 'w') as f:
        f.writelines(f'{osp.basename(p)} {label}\n' for p, label in zip(val, labels))

    log = mim('test', 'mmpretrain', deploy_config, '--checkpoint', checkpoint, '--work-dir',
              str(tmp_path / 'test'), cwd=str(tmp_path))
    reference = metric(log, 'accuracy/top1')
    assert reference == 100.0, log[-2000:]
    onnx_file = str(tmp_path / 'cls.onnx')
    assert load_tool('export_onnx').main([deploy_config, checkpoint, '--out', onnx_file,
                                          '--end2end', '--probs', '--shape', '64', '64']) == 0
    capsys.readouterr()
    for backend, batch in (('onnxruntime', '1'), ('onnxruntime', '4'), ('openvino', '4')):
        line = run_deploy_test(capsys, deploy_config, onnx_file, '--backend', backend,
                               '--batch-size', batch)
        assert abs(metric(line, 'accuracy/top1') - reference) <= 0.2, line
