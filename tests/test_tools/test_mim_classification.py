"""End to end through mim: train the tiny classifier, test it deployed and not."""
import os.path as osp
import re

import pytest

from tests.conftest import REPO_ROOT, load_tool, mim

pytestmark = pytest.mark.slow
CONFIG = osp.join(REPO_ROOT, 'configs/cls/repghost_1_0x_tiny-imagenet.py')


def top1(log):
    return float(re.findall(r'accuracy/top1: ([0-9.]+)', log)[-1])


def test_tiny_classifier_learns_and_tests_the_same_deployed(tmp_path):
    data = str(tmp_path / 'tiny_imagenet')
    load_tool('make_tiny_imagenet').main(['--out', data])  # the default 8 x (80 + 25) set
    options = [f'{loader}.dataset.data_root={data}'
               for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    work = str(tmp_path / 'work')
    mim('train', 'mmpretrain', CONFIG, '--work-dir', work, '--cfg-options', *options,
        cwd=str(tmp_path))
    checkpoint = osp.join(work, 'epoch_30.pth')
    deployed_log = mim('test', 'mmpretrain', CONFIG, '--checkpoint', checkpoint, '--work-dir',
                       str(tmp_path / 'test'), '--cfg-options', *options, cwd=str(tmp_path))
    assert 'test model deployed (backbone), no re-parameterization branches left' in deployed_log
    train_log = mim('test', 'mmpretrain', CONFIG, '--checkpoint', checkpoint, '--work-dir',
                    str(tmp_path / 'test_train'), '--cfg-options', *options, 'custom_hooks=[]',
                    cwd=str(tmp_path))
    assert top1(deployed_log) >= 80.0  # percent
    assert abs(top1(deployed_log) - top1(train_log)) <= 0.1
