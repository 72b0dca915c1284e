"""End-to-end through mim: `mim train mmdet CONFIG` then `mim test mmdet ... --checkpoint`."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, load_tool

pytestmark = pytest.mark.slow
MIM = osp.join(osp.dirname(sys.executable), 'mim')


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'tiny_coco'
    load_tool('make_tiny_coco').main(['--out', str(root), '--train', '48', '--val', '12'])
    return str(root) + '/'


def mim(*args, cwd):
    env = dict(os.environ, PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               PYTHONPATH=REPO_ROOT)
    result = subprocess.run([MIM, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def data_options(data_root):
    ann = data_root + 'annotations/instances_val2017.json'
    return [f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']


def test_mask_rcnn_mim_train_then_test_prints_bbox_and_segm_map(tmp_path, tiny_coco):
    config = osp.join(REPO_ROOT, 'configs/mask_rcnn/repghost_1_0x_tiny-coco.py')
    epochs = 8
    options = data_options(tiny_coco) + [
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}']
    mim('train', 'mmdet', config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        *options, cwd=str(tmp_path))
    checkpoint = str(tmp_path / 'work' / f'epoch_{epochs}.pth')
    log = mim('test', 'mmdet', config, '--checkpoint', checkpoint, '--work-dir',
              str(tmp_path / 'test'), '--cfg-options', *options, cwd=str(tmp_path))
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all' in log  # pycocotools
    assert 'Evaluating bbox' in log and 'Evaluating segm' in log
    segm_map = float(re.findall(r'coco/segm_mAP: ([0-9.]+)', log)[-1])
    assert segm_map > 0
