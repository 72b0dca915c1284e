"""model-index.yml + configs/*/metafile.yml: OpenMMLab format, every config, true numbers."""
import glob
import os.path as osp

import pytest
import yaml
from mmengine.config import Config

from tests.conftest import REPO_ROOT, load_tool

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
        osp.join(REPO_ROOT, 'configs', '*', '*.py')) if '/_base_/' not in p
        and '/cls/' not in p)  # classification configs: see configs/cls (issue 6)
    listed = sorted(model['Config'] for model in MODELS)
    assert listed == shipped
    names = [model['Name'] for model in MODELS]
    assert len(set(names)) == len(names)
    for model in MODELS:
        assert model['In Collection'] in COLLECTIONS
        assert {'Parameters', 'FLOPs', 'Training Data', 'Epochs'} <= set(model['Metadata'])
    for collection in COLLECTIONS.values():
        assert collection['Paper']['URL'] == 'https://arxiv.org/abs/2211.06088'
        assert 'RepGhostNet' in collection['Metadata']['Architecture']


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
    """(H, W) of the config's test-time Resize scale (mmdet gives it as (W, H))."""
    resize = next(t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'Resize')
    return resize['scale'][1], resize['scale'][0]


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
