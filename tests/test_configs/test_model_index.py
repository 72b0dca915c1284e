"""model-index.yml + configs/*/metafile.yml: OpenMMLab format, every config, true numbers."""
import glob
import os.path as osp

import pytest
import yaml
from mmengine.config import Config

from tests.conftest import REPO_ROOT, load_tool

PAPER_TABLE_3 = {  # ImageNet top-1 (EMA weights)
    '0.5x': 66.9, '0.58x': 68.9, '0.8x': 72.2, '1.0x': 74.2, '1.11x': 75.1, '1.3x': 76.4,
    '1.5x': 77.5, '2.0x': 78.8,
}
PAPER_TABLE_4 = {  # bbox mAP, mask mAP on COCO val
    'configs/retinanet/repghost_1_3x.py': {'box AP': 33.5},
    'configs/retinanet/repghost_1_5x.py': {'box AP': 34.4},
    'configs/mask_rcnn/repghost_1_3x.py': {'box AP': 36.1, 'mask AP': 33.1},
    'configs/mask_rcnn/repghost_1_5x.py': {'box AP': 36.9, 'mask AP': 33.5},
}


def load_models():
    with open(osp.join(REPO_ROOT, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    models, collections = [], {}
    for metafile in index['Import']:
        with open(osp.join(REPO_ROOT, metafile)) as f:
            meta = yaml.safe_load(f)
        for collection in meta['Collections']:
            collections[collection['Name']] = collection
        models += meta['Models']
    return models, collections


MODELS, COLLECTIONS = load_models()


def test_every_config_is_listed_once_with_the_openmmlab_fields():
    shipped = sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(
        osp.join(REPO_ROOT, 'configs', '*', '*.py')) if '/_base_/' not in p)
    listed = sorted(model['Config'] for model in MODELS)
    # a *_deploy.py config is its model in the fused structure, listed under the model
    assert listed == [p for p in shipped if not p.endswith('_deploy.py')]
    assert {p.replace('_deploy.py', '.py') for p in shipped if p.endswith('_deploy.py')} <= set(
        listed)
    names = [model['Name'] for model in MODELS]
    assert len(set(names)) == len(names)
    for model in MODELS:
        assert model['In Collection'] in COLLECTIONS
        assert {'Parameters', 'FLOPs', 'Training Data', 'Epochs'} <= set(model['Metadata'])
    for collection in COLLECTIONS.values():
        assert collection['Paper']['URL'] == 'https://arxiv.org/abs/2211.06088'
        assert 'RepGhostNet' in collection['Metadata']['Architecture']


def test_classifier_results_are_table_3():
    for width, top1 in PAPER_TABLE_3.items():
        [model] = [m for m in MODELS
                   if m['Config'] == f'configs/cls/repghost_{width.replace(".", "_")}.py']
        [result] = model['Results']
        assert result['Dataset'] == 'ImageNet-1k'
        assert result['Metrics'] == {'Top 1 Accuracy': top1}


def test_paper_results_are_table_4():
    for model in MODELS:
        if model['Config'] in PAPER_TABLE_4:
            metrics = {}
            for result in model['Results']:
                assert result['Dataset'] == 'COCO'
                metrics.update(result['Metrics'])
            assert metrics == PAPER_TABLE_4[model['Config']]
    assert {m['Config'] for m in MODELS} >= set(PAPER_TABLE_4)


def scale_of(cfg):
    """(H, W) the config tests at: its CenterCrop (mmpretrain) or Resize scale (mmdet, W, H)."""
    pipeline = {t['type']: t for t in cfg.test_dataloader.dataset.pipeline}
    if 'CenterCrop' in pipeline:
        return (pipeline['CenterCrop']['crop_size'], ) * 2
    return pipeline['Resize']['scale'][1], pipeline['Resize']['scale'][0]


@pytest.mark.parametrize('model', MODELS, ids=[m['Name'] for m in MODELS])
def test_params_and_flops_are_measured_values(model):
    """Parameters and FLOPs (conv + FC MACs at the test scale) within 0.5% of a recount."""
    get_flops = load_tool('get_flops')
    cfg = Config.fromfile(osp.join(REPO_ROOT, model['Config']))
    detector = next(get_flops.build_models(get_flops.parse_args(
        ['--config', osp.join(REPO_ROOT, model['Config'])])))[1]
    params, macs = get_flops.count(detector, scale_of(cfg))
    assert model['Metadata']['Parameters'] == pytest.approx(params, rel=5e-3)
    assert model['Metadata']['FLOPs'] == pytest.approx(macs, rel=5e-3)
