"""``_base_ = 'mmrepghost::<config>'`` in a user's config: resolution, scopes, builds, errors."""
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from mmrepghost.configs import (PREFIX, configs_root, enable_package_bases, list_configs,
                                load_config, shipped_config)
from tests.conftest import REPO_ROOT


def scopes(node, found=None):
    """Every ``_scope_`` value in a config tree."""
    found = set() if found is None else found
    if isinstance(node, dict):
        if '_scope_' in node:
            found.add(node['_scope_'])
        for value in node.values():
            scopes(value, found)
    elif isinstance(node, (list, tuple)):
        for value in node:
            scopes(value, found)
    return found


def write(tmp_path, text, name='user_config.py'):
    path = tmp_path / 'elsewhere' / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return str(path)


def test_an_editable_install_reads_the_checkouts_configs():
    assert configs_root() == osp.join(REPO_ROOT, 'configs')
    assert shipped_config('retinanet/repghost_1_3x.py') == osp.join(
        REPO_ROOT, 'configs', 'retinanet', 'repghost_1_3x.py')
    assert shipped_config(PREFIX + 'mask_rcnn/repghost_1_3x.py').endswith(
        'configs/mask_rcnn/repghost_1_3x.py')
    names = list_configs()
    assert 'retinanet/repghost_1_3x.py' in names and 'cls/repghost_2_0x.py' in names
    assert not any('_base_' in name for name in names)


def test_detection_config_inherits_a_shipped_one_and_builds(tmp_path):
    path = write(tmp_path, f"_base_ = '{PREFIX}retinanet/repghost_1_0x_tiny-coco.py'\n"
                           "model = dict(bbox_head=dict(num_classes=3))\n")
    cfg = load_config(path)
    shipped = Config.fromfile(osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py'))
    assert cfg.model.backbone == shipped.model.backbone
    assert cfg.model.bbox_head.num_classes == 3 and shipped.model.bbox_head.num_classes == 80
    assert cfg.runner_type == 'RepGhostRunner' and cfg.default_scope == 'mmdet'
    # nothing is left scoped to 'mmrepghost', which no registry answers to
    assert scopes(cfg._cfg_dict.to_dict()) == {'mmdet'}
    init_default_scope(cfg.default_scope)
    from mmdet.registry import HOOKS, MODELS
    detector = MODELS.build(cfg.model)
    assert type(detector.backbone).__name__ == 'RepGhostNet'
    hooks = [HOOKS.build(hook) for hook in cfg.custom_hooks]
    assert [type(hook).__name__ for hook in hooks] == ['RepGhostDeployHook']


def test_mixed_with_mmdet_bases(tmp_path):
    path = write(tmp_path, """_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
          'mmrepghost::_base_/models/repghostnet_1.0x_fpn_backbone.py']
model = dict(backbone={{_base_.repghostnet_backbone}},
             neck=dict(in_channels={{_base_.repghostnet_channels}}))
""")
    cfg = load_config(path)
    assert cfg.model.type == 'FasterRCNN' and cfg.model.backbone.type == 'RepGhostNet'
    assert cfg.model._scope_ == 'mmdet' and scopes(cfg._cfg_dict.to_dict()) == {'mmdet'}
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    detector = MODELS.build(cfg.model)
    assert list(detector.backbone.out_channels) == [24, 40, 80, 160]


def test_classification_config_inherits_a_shipped_one_and_builds(tmp_path):
    path = write(tmp_path, f"_base_ = '{PREFIX}cls/repghost_1_0x_tiny-imagenet.py'\n"
                           "train_cfg = dict(max_epochs=2)\n")
    cfg = load_config(path)
    assert cfg.default_scope == 'mmpretrain' and cfg.train_cfg.max_epochs == 2
    assert scopes(cfg._cfg_dict.to_dict()) <= {'mmpretrain'}
    init_default_scope('mmpretrain')
    from mmpretrain.registry import HOOKS, METRICS, MODELS, TRANSFORMS
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'RepGhostNet'
    transforms = [TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline]
    assert type(transforms[1]).__name__ == 'RandomResizedCrop'
    assert type(METRICS.build(cfg.val_evaluator)).__name__ == 'Accuracy'
    assert [type(HOOKS.build(h)).__name__ for h in cfg.custom_hooks] == [
        'EMAHook', 'RepGhostDeployHook']


def test_unknown_shipped_name_says_where_shipped_configs_live(tmp_path):
    path = write(tmp_path, f"_base_ = '{PREFIX}retinanet/repghost_1_3.py'\n")
    with pytest.raises(FileNotFoundError) as error:
        load_config(path)
    assert str(error.value).startswith(
        f'{PREFIX}retinanet/repghost_1_3.py is not a shipped mmrepghost config: shipped '
        f'configs live in {configs_root()} (e.g. {PREFIX}retinanet/repghost_1_3x.py); '
        'closest: retinanet/repghost_1_3x.py, ')
    for name in ('../setup.py', '/etc/passwd', '', 'retinanet'):
        with pytest.raises(FileNotFoundError, match='is not a shipped mmrepghost config'):
            shipped_config(name)
    with pytest.raises(FileNotFoundError, match=r"config 'nope\.py' does not exist"):
        load_config('nope.py')


def test_enabling_is_idempotent_and_leaves_other_bases_to_mmengine(tmp_path):
    enable_package_bases()
    patched = Config.__dict__['_get_cfg_path']
    enable_package_bases()
    assert Config.__dict__['_get_cfg_path'] is patched
    original = patched.__func__.mmrepghost_original
    here = str(tmp_path / 'a.py')
    for name in ('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './base.py'):
        assert Config._get_cfg_path(name, here) == original(name, here)
    assert Config._get_cfg_path('mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                                here)[1] == 'mmdet'
    assert Config._get_cfg_path(PREFIX + 'retinanet/repghost_1_3x.py', here) == (
        shipped_config('retinanet/repghost_1_3x.py'), None)


def test_run_tools_take_a_shipped_config_by_its_full_name(capsys):
    from mmrepghost.engine.launch import config_for_run
    from tests.conftest import load_tool
    cfg = config_for_run(PREFIX + 'mask_rcnn/repghost_1_3x.py',
                         cfg_options={'train_cfg.max_epochs': 1}, launcher='pytorch')
    assert cfg.filename == shipped_config('mask_rcnn/repghost_1_3x.py')
    assert cfg.model.type == 'MaskRCNN' and cfg.train_cfg.max_epochs == 1
    assert cfg.work_dir == './work_dirs/repghost_1_3x' and cfg.launcher == 'pytorch'
    for tool, argv in (('train', [PREFIX + 'retinanet/nope.py']),
                       ('test', [PREFIX + 'retinanet/nope.py', __file__])):
        assert load_tool(tool).main(argv) == 2
        assert (f'error: {PREFIX}retinanet/nope.py is not a shipped mmrepghost config: shipped '
                f'configs live in {configs_root()}') in capsys.readouterr().err
    assert load_tool('test').main([PREFIX + 'retinanet/repghost_1_3x.py', 'missing.pth']) == 2
    assert "error: checkpoint 'missing.pth' does not exist" in capsys.readouterr().err
