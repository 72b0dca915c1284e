"""Every checkpoint kind works in every consumer (issue 14, point 4).

The tiny RetinaNet is trained once on shapes labelled 'disc', 'triangle', 'rectangle' (not COCO
names) and the tiny classifier once on the 8 classes of tools/make_tiny_imagenet.py (not
ImageNet names). Their checkpoints (the Runner's epoch checkpoint, RepGhostDeployHook's
``*_deploy.pth``, tools/reparameterize.py's output and, for classification, converted official
weights) go through mmdet's and mmpretrain's own loaders and inferencers, ``mim test`` and the
project's tools. Each must run, carry the dataset's class names (a silent COCO/ImageNet
fallback fails) and, deployed, predict what the training structure predicts.
"""
import glob
import os.path as osp
import re
import types

import mmengine
import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from mmrepghost.deploy import (DatasetMetaWarning, build_model, checkpoint_dataset_meta,
                               dataset_meta_from_config, load_trained_model, save_deployed)
from mmrepghost.deploy.onnx import RawOutputs
from mmrepghost.utils import load_checkpoint_file
from tests.conftest import REPO_ROOT, TIMM_NAMES, load_tool, mim, randomize_bn_, relative_diff

RETINANET = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')
CLASSIFIER = osp.join(REPO_ROOT, 'configs/cls/repghost_1_0x_tiny-imagenet.py')
IN1K = osp.join(REPO_ROOT, 'configs/cls/repghost_1_0x.py')
SHAPES = ('disc', 'triangle', 'rectangle')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
DET_KINDS = ('epoch', 'hook_deploy', 'reparameterize')
CLS_KINDS = DET_KINDS + ('converted',)
RTOL = 1e-4  # deployed vs training structure, relative to the largest output


def train_once(cfg, work):
    """Train ``cfg`` in-process; its config file, checkpoints and the reparameterized one."""
    cfg.work_dir = str(work)
    cfg.launcher = 'none'
    cfg.randomness = dict(seed=0)
    cfg.train_cfg.max_epochs = 1
    cfg.train_cfg.val_interval = 2  # no validation: nothing here needs it
    cfg.default_hooks.checkpoint.interval = 1
    for loader in LOADERS:
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    config = str(work / 'train_config.py')
    Runner.from_cfg(cfg).train()
    cfg.dump(config)
    assert load_tool('reparameterize').main(
        [config, str(work / 'epoch_1.pth'), str(work / 'reparameterized.pth')]) == 0
    return dict(epoch=(config, str(work / 'epoch_1.pth')),
                hook_deploy=(str(work / 'epoch_1_deploy.py'), str(work / 'epoch_1_deploy.pth')),
                reparameterize=(str(work / 'reparameterized.py'),
                                str(work / 'reparameterized.pth')))


@pytest.fixture(scope='module')
def det(tmp_path_factory):
    """The tiny RetinaNet, 1 epoch on 8 shape images; its checkpoints and reference outputs."""
    from mmdet.apis import inference_detector, init_detector
    root = tmp_path_factory.mktemp('det')
    data = str(root / 'shapes') + '/'
    load_tool('make_tiny_coco').main(['--out', data, '--train', '8', '--val', '2',
                                      '--categories', 'shapes'])
    cfg = Config.fromfile(RETINANET)
    for loader in LOADERS:
        cfg[loader].dataset.data_root = data
        cfg[loader].dataset.metainfo = dict(classes=SHAPES)
        cfg[loader].batch_size = 4
    cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = (
        data + 'annotations/instances_val2017.json')
    cfg.model.bbox_head.num_classes = len(SHAPES)
    # one epoch: the scores stay near the focal-loss prior 0.01 (spread ~2e-5), keep them all;
    # the boxes carry most of the deployed-vs-training comparison
    cfg.model.test_cfg.score_thr = 0
    kinds = train_once(cfg, root / 'work')
    image = osp.join(data, 'val2017', '000000000009.jpg')
    reference = init_detector(*kinds['epoch'], device='cpu')
    return types.SimpleNamespace(
        kinds=kinds, data=data, image=image, root=root, model=reference,
        predictions=inference_detector(reference, image).pred_instances)


def assert_same_detections(pred, ref, top=10):
    """The ``top`` best of ``pred`` are in ``ref``: same label, score and box up to RTOL."""
    assert len(pred.scores) == len(ref.scores) > 0
    box_tol = RTOL * ref.bboxes.abs().max()
    score_tol = RTOL * ref.scores.max()
    for i in pred.scores.argsort(descending=True)[:top]:
        same = ((ref.labels == pred.labels[i]) & ((ref.scores - pred.scores[i]).abs() <= score_tol)
                & ((ref.bboxes - pred.bboxes[i]).abs().amax(1) <= box_tol))
        assert same.any(), (i, pred.scores[i], pred.bboxes[i])


def test_every_detection_checkpoint_holds_the_training_sets_class_names(det):
    epoch = load_checkpoint_file(det.kinds['epoch'][1])['meta']['dataset_meta']
    assert tuple(epoch['classes']) == SHAPES  # what mmengine's Runner writes
    for kind in DET_KINDS[1:]:
        meta = load_checkpoint_file(det.kinds[kind][1])['meta']
        assert meta['deploy'] is True and meta['dataset_meta'] == epoch, kind


@pytest.mark.parametrize('kind', DET_KINDS)
def test_mmdet_init_detector_and_inference_detector(det, kind):
    from mmdet.apis import inference_detector, init_detector
    model = init_detector(*det.kinds[kind], device='cpu')
    assert tuple(model.dataset_meta['classes']) == SHAPES
    assert model.backbone.deploy is (kind != 'epoch')
    assert_same_detections(inference_detector(model, det.image).pred_instances,
                           det.predictions)


@pytest.mark.parametrize('kind', DET_KINDS)
def test_mmdet_det_inferencer(det, kind):
    from mmdet.apis import DetInferencer
    config, checkpoint = det.kinds[kind]
    inferencer = DetInferencer(model=config, weights=checkpoint, device='cpu',
                               show_progress=False)
    assert tuple(inferencer.model.dataset_meta['classes']) == SHAPES
    assert tuple(inferencer.visualizer.dataset_meta['classes']) == SHAPES
    result = inferencer(det.image, return_datasamples=True, no_save_vis=True)
    assert_same_detections(result['predictions'][0].pred_instances, det.predictions)


@pytest.mark.parametrize('kind', DET_KINDS)
def test_show_predictions_tool(det, kind, tmp_path):
    tool = load_tool('show_predictions')
    config, checkpoint = det.kinds[kind]
    out = str(tmp_path / 'predictions.png')
    assert tool.main([config, checkpoint, '--images', det.image, '--num', '1',
                      '--score-thr', '0', '--out', out]) == 0
    assert osp.getsize(out) > 0
    inferencer = tool.build_inferencer(config, checkpoint)
    assert tuple(inferencer.model.dataset_meta['classes']) == SHAPES
    assert tuple(inferencer.visualizer.dataset_meta['classes']) == SHAPES
    result = inferencer(det.image, return_datasamples=True, no_save_vis=True)
    assert_same_detections(result['predictions'][0].pred_instances, det.predictions)


@pytest.mark.parametrize('kind', DET_KINDS)
def test_export_onnx_tool(det, kind, tmp_path):
    import onnxruntime as ort
    config, checkpoint = det.kinds[kind]
    out = str(tmp_path / 'model.onnx')
    assert load_tool('export_onnx').main([config, checkpoint, '--out', out,
                                          '--shape', '128', '160']) == 0
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        expected = RawOutputs(det.model.eval())(x)
    got = ort.InferenceSession(out, providers=['CPUExecutionProvider']).run(
        None, {'images': x.numpy()})
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert relative_diff(e, torch.from_numpy(g)) <= RTOL


def test_mim_test_mmdet_every_kind_same_predictions_and_class_names(det, tmp_path):
    maps = {}
    for kind in DET_KINDS:
        config, checkpoint = det.kinds[kind]
        out = str(tmp_path / f'{kind}.pkl')
        log = mim('test', 'mmdet', config, '--checkpoint', checkpoint, '--work-dir',
                  str(tmp_path / kind), '--out', out, '--cfg-options',
                  'test_evaluator.classwise=True', cwd=str(tmp_path))
        for name in SHAPES:  # the per-class table names the dataset's classes
            assert re.search(rf'^\| {name} +\|', log, re.M), (kind, name, log[-3000:])
        assert not re.search(r'^\| (person|sports ball) +\|', log, re.M)
        maps[kind] = float(re.findall(r'coco/bbox_mAP: ([0-9.]+)', log)[-1])
        [result] = [r for r in mmengine.load(out) if r['img_path'] == det.image]
        assert_same_detections(types.SimpleNamespace(**result['pred_instances']),
                               det.predictions)
    assert len(set(maps.values())) == 1, maps


def strip_dataset_meta(source, path, value):
    checkpoint = load_checkpoint_file(source)
    if value == 'missing':
        del checkpoint['meta']['dataset_meta']
    else:
        checkpoint['meta']['dataset_meta'] = None
    torch.save(checkpoint, path)
    return str(path)


@pytest.mark.parametrize('value', ['missing', None])
def test_old_detection_checkpoint_loads_with_the_configs_class_names(det, tmp_path, value,
                                                                     capsys):
    config, source = det.kinds['epoch']
    old = strip_dataset_meta(source, tmp_path / 'old.pth', value)
    with pytest.warns(DatasetMetaWarning, match=r'old\.pth has no dataset_meta.*3 classes '
                      r"\('disc', 'triangle', 'rectangle'\)"):
        loaded = load_trained_model(config, old)
    assert tuple(loaded.meta['dataset_meta']['classes']) == SHAPES
    assert tuple(loaded.model.dataset_meta['classes']) == SHAPES
    out = str(tmp_path / 'deploy.pth')
    assert load_tool('reparameterize').main([config, old, out]) == 0
    assert 'warning: ' in capsys.readouterr().err
    assert tuple(load_checkpoint_file(out)['meta']['dataset_meta']['classes']) == SHAPES


# ----------------------------------------------------------------------------- classification

@pytest.fixture(scope='module')
def cls(tmp_path_factory):
    """The tiny classifier, 1 epoch on 4 images a class; its checkpoints; converted weights."""
    from mmpretrain.apis import get_model
    from tests.test_tools.test_convert_weights import official_checkpoint
    root = tmp_path_factory.mktemp('cls')
    data = str(root / 'tiny_imagenet')
    make_tiny_imagenet = load_tool('make_tiny_imagenet')
    make_tiny_imagenet.main(['--out', data, '--train', '4', '--val', '1'])
    cfg = Config.fromfile(CLASSIFIER)
    for loader in LOADERS:
        cfg[loader].dataset.data_root = data
        cfg[loader].batch_size = 16
    kinds = train_once(cfg, root / 'work')
    # official-layout weights of RepGhostNet 1.0x, converted to the ImageNet classifier layout
    torch.manual_seed(0)
    timm_model = randomize_bn_(timm.create_model(TIMM_NAMES['1.0x'], pretrained=False)).eval()
    torch.save(official_checkpoint(timm_model), root / 'official.pth')
    converted = str(root / 'converted.pth')
    assert load_tool('convert_weights').main(
        [str(root / 'official.pth'), converted, '--from', 'official']) == 0
    kinds['converted'] = (IN1K, converted)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = dict(trained=get_model(kinds['epoch'][0], pretrained=kinds['epoch'][1],
                                        device='cpu')(x, mode='tensor'),
                      converted=timm_model(x))
    return types.SimpleNamespace(
        kinds=kinds, data=data, x=x, logits=logits, classes=make_tiny_imagenet.CLASSES,
        official=str(root / 'official.pth'),
        image=osp.join(data, 'val', 'val_00000.JPEG'))


def expected_classes(cls, kind):
    if kind == 'converted':
        from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
        return tuple(IMAGENET_CATEGORIES)
    return cls.classes


def test_every_classification_checkpoint_holds_class_names(cls):
    epoch = load_checkpoint_file(cls.kinds['epoch'][1])['meta']['dataset_meta']
    assert tuple(epoch['classes']) == cls.classes
    for kind in CLS_KINDS[1:]:
        meta = load_checkpoint_file(cls.kinds[kind][1])['meta']
        assert tuple(meta['dataset_meta']['classes']) == expected_classes(cls, kind)
        if kind != 'converted':
            assert meta['deploy'] is True and meta['dataset_meta'] == epoch


def test_converted_backbone_layout_holds_imagenet_class_names_too(cls, tmp_path, capsys):
    out = str(tmp_path / 'backbone.pth')
    assert load_tool('convert_weights').main(
        [cls.official, out, '--from', 'official', '--layout', 'backbone']) == 0
    assert '1000 ImageNet class names' in capsys.readouterr().out
    meta = load_checkpoint_file(out)['meta']
    assert tuple(meta['dataset_meta']['classes']) == expected_classes(cls, 'converted')


@pytest.mark.parametrize('kind', CLS_KINDS)
@pytest.mark.parametrize('api', ['get_model', 'init_model'])
def test_mmpretrain_get_model_and_init_model(cls, kind, api):
    import mmpretrain
    from mmpretrain.apis import init_model
    config, checkpoint = cls.kinds[kind]
    if api == 'get_model':
        model = mmpretrain.get_model(config, pretrained=checkpoint, device='cpu')
    else:
        model = init_model(config, checkpoint, device='cpu')
    assert tuple(model._dataset_meta['classes']) == expected_classes(cls, kind)
    with torch.no_grad():
        logits = model(cls.x, mode='tensor')
    reference = cls.logits['converted' if kind == 'converted' else 'trained']
    assert relative_diff(reference, logits) <= RTOL


@pytest.mark.parametrize('kind', CLS_KINDS)
def test_mmpretrain_image_classification_inferencer(cls, kind):
    from mmpretrain.apis import ImageClassificationInferencer
    config, checkpoint = cls.kinds[kind]
    inferencer = ImageClassificationInferencer(model=config, pretrained=checkpoint,
                                               device='cpu')
    classes = expected_classes(cls, kind)
    assert tuple(inferencer.classes) == classes
    [result] = inferencer(cls.image)
    assert result['pred_class'] == classes[result['pred_label']]
    if kind != 'converted':
        [reference] = ImageClassificationInferencer(
            model=cls.kinds['epoch'][0], pretrained=cls.kinds['epoch'][1], device='cpu')(
                cls.image)
        np.testing.assert_allclose(result['pred_scores'], reference['pred_scores'],
                                   rtol=0, atol=RTOL * reference['pred_scores'].max())


def test_mim_test_mmpretrain_every_kind_same_predictions(cls, tmp_path):
    from mmpretrain.apis import ImageClassificationInferencer
    images = sorted(glob.glob(osp.join(cls.data, 'val', '*.JPEG')))
    reference = ImageClassificationInferencer(  # the training structure, in-process
        model=cls.kinds['epoch'][0], pretrained=cls.kinds['epoch'][1], device='cpu')(images)
    reference = {path: r['pred_scores'] for path, r in zip(images, reference)}
    top1 = {}
    for kind in CLS_KINDS:
        config, checkpoint = cls.kinds[kind]
        out = str(tmp_path / f'{kind}.pkl')
        options = []
        if kind == 'converted':  # the ImageNet config on the tiny set, in-process loading
            options = ['--cfg-options', f'test_dataloader.dataset.data_root={cls.data}',
                       'test_dataloader.num_workers=0', 'test_dataloader.batch_size=8']
        log = mim('test', 'mmpretrain', config, '--checkpoint', checkpoint, '--work-dir',
                  str(tmp_path / kind), '--out', out, *options, cwd=str(tmp_path))
        top1[kind] = float(re.findall(r'accuracy/top1: ([0-9.]+)', log)[-1])
        results = mmengine.load(out)
        assert len(results) == len(images)
        if kind != 'converted':
            for result in results:
                expected = reference[result['img_path']]
                np.testing.assert_allclose(result['pred_score'].numpy(), expected, rtol=0,
                                           atol=RTOL * expected.max())
    converted = top1.pop('converted')
    assert 0 <= converted <= 100
    assert len(set(top1.values())) == 1, top1


@pytest.mark.parametrize('value', ['missing', None])
def test_old_classification_checkpoint_loads_with_the_configs_class_names(cls, tmp_path,
                                                                          value):
    config, source = cls.kinds['epoch']
    old = strip_dataset_meta(source, tmp_path / 'old.pth', value)
    with pytest.warns(DatasetMetaWarning, match=r'old\.pth has no dataset_meta.*8 classes'):
        loaded = load_trained_model(config, old)
    assert tuple(loaded.meta['dataset_meta']['classes']) == cls.classes


# ---------------------------------------------------------------------- the two shared functions

def test_dataset_meta_from_config_reads_registries_metainfo_classes_and_wrappers():
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    cfg = Config.fromfile(RETINANET)
    coco = dataset_meta_from_config(cfg)
    assert coco['classes'][0] == 'person' and len(coco['classes']) == len(coco['palette']) == 80
    cfg.train_dataloader.dataset = dict(type='RepeatDataset', times=2, dataset=dict(
        type='ConcatDataset', datasets=[dict(cfg.val_dataloader.dataset,
                                             metainfo=dict(classes=SHAPES))]))
    meta = dataset_meta_from_config(cfg)  # the wrapped dataset's, palette from METAINFO
    assert meta['classes'] == SHAPES and meta['palette'] == coco['palette']
    assert dataset_meta_from_config(Config.fromfile(IN1K)) == dict(
        classes=tuple(IMAGENET_CATEGORIES))
    cls_cfg = Config.fromfile(IN1K)
    cls_cfg.train_dataloader.dataset.classes = ['a', 'b']  # mmpretrain's classes= argument
    assert dataset_meta_from_config(cls_cfg) == dict(classes=('a', 'b'))
    with pytest.raises(ValueError, match='the config has no dataset to take class names from'):
        dataset_meta_from_config(Config(dict(model=dict(type='ImageClassifier'))))
    cls_cfg.train_dataloader.dataset = dict(type='NoSuchDataset')
    with pytest.raises(ValueError, match="dataset type 'NoSuchDataset' is not a registered "
                       "mmengine dataset in scope 'mmpretrain'"):
        dataset_meta_from_config(cls_cfg)


def test_save_deployed_refuses_train_structure_and_missing_class_names(det, tmp_path):
    loaded = load_trained_model(*det.kinds['epoch'])
    meta = dict(dataset_meta=dict(classes=SHAPES))
    with pytest.raises(ValueError, match=r"\['backbone'\] are in the train structure"):
        save_deployed(loaded.model, loaded.cfg, str(tmp_path / 'a.pth'), meta)
    deployed = load_trained_model(*det.kinds['hook_deploy'])
    for bad in (dict(), dict(dataset_meta=None), dict(dataset_meta=dict(palette=[]))):
        with pytest.raises(ValueError, match=r'meta\["dataset_meta"\] must be a dict with'):
            save_deployed(deployed.model, deployed.cfg, str(tmp_path / 'a.pth'), bad)
    with pytest.raises(ValueError, match="a deploy checkpoint is a .pth file, got 'a.onnx'"):
        save_deployed(deployed.model, deployed.cfg, 'a.onnx', meta)
    assert list(tmp_path.iterdir()) == []
    assert save_deployed(deployed.model, deployed.cfg, str(tmp_path / 'a.pth'), meta) == (
        str(tmp_path / 'a.pth'), str(tmp_path / 'a.py'))
    with pytest.raises(FileExistsError, match='a.pth exists; pass overwrite=True'):
        save_deployed(deployed.model, deployed.cfg, str(tmp_path / 'a.pth'), meta)
    assert load_trained_model(str(tmp_path / 'a.py'), str(tmp_path / 'a.pth')).meta == dict(
        meta, deploy=True)


def test_reparameterize_refuses_old_checkpoint_when_config_names_no_classes(tmp_path, capsys):
    model_only = osp.join(REPO_ROOT, 'configs/_base_/models/repghostnet_1.0x.py')
    model = build_model(Config.fromfile(model_only))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), tmp_path / 'old.pth')
    out = str(tmp_path / 'deploy.pth')
    assert load_tool('reparameterize').main([model_only, str(tmp_path / 'old.pth'), out]) == 2
    err = capsys.readouterr().err
    assert 'old.pth has no class names (meta["dataset_meta"])' in err
    assert 'warning: ' in err and not osp.exists(out)


def test_checkpoint_dataset_meta_keeps_the_checkpoints_and_reads_legacy_classes(recwarn):
    cfg = Config.fromfile(RETINANET)
    ours = dict(classes=SHAPES, palette=[(1, 2, 3)] * 3)
    assert checkpoint_dataset_meta(dict(dataset_meta=ours), cfg, 'a.pth') == ours
    assert checkpoint_dataset_meta(dict(CLASSES=['x', 'y']), cfg, 'a.pth') == dict(
        classes=('x', 'y'))  # mmdet 2.x / mmcls 0.x
    assert not [w for w in recwarn.list if w.category is DatasetMetaWarning]
    with pytest.warns(DatasetMetaWarning, match=r"a\.pth has no dataset_meta with class names.*"
                      r"80 classes \('person', 'bicycle'"):
        meta = checkpoint_dataset_meta(dict(dataset_meta=dict(palette=[])), cfg, 'a.pth')
    assert meta['classes'][0] == 'person'
    with pytest.raises(ValueError, match=r'a\.pth: meta\["dataset_meta"\] must be a dict, got '
                       'list'):
        checkpoint_dataset_meta(dict(dataset_meta=['disc']), cfg, 'a.pth')
