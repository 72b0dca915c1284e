"""A training run SIGKILLed mid-epoch resumes with `mim train --resume` and ends where an
uninterrupted run with the same seed ends: same weights, EMA, optimizer state, iteration
counter and COCO mAP."""
import os.path as osp
import re
import textwrap

import pytest
import torch

from mmrepghost.utils import load_checkpoint_file
from tests.conftest import REPO_ROOT, coco_data_options, load_tool, mim

pytestmark = pytest.mark.slow

EPOCHS, ITERS_PER_EPOCH = 4, 6  # 24 images, batch 4
KILL_AT_ITER = 15  # the 3rd iteration of epoch 3: epoch_2.pth exists, epoch 3 is half done

# Bit-exact resumption needs the augmentation RNG to restart with every epoch:
# non-persistent loader workers are re-seeded from the config seed each epoch (persistent
# ones carry their RNG across epochs, and no checkpoint can hold a worker's RNG state).
RUN_CONFIG = """
_base_ = {base!r}
randomness = dict(seed=0, deterministic=True)
train_dataloader = dict(batch_size=4, num_workers=2, persistent_workers=False)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
train_cfg = dict(max_epochs={epochs}, val_interval={epochs})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=8),
    dict(type='CosineAnnealingLR', begin=0, end={epochs}, by_epoch=True, eta_min=1e-4)
]
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
model = dict(test_cfg=dict(score_thr=0.0))
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.01, update_buffers=True,
         priority=49),
    dict(type='RepGhostDeployHook', test=True)
]
"""

# A test-only hook: the process kills itself with SIGKILL after a given iteration, the way a
# cluster scheduler would (no exception, no cleanup, no atexit).
KILL_HOOK = """
import os
import signal

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SigkillAtIterHook(Hook):
    priority = 'LOWEST'  # after the logger has written the iteration

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope='module')
def resume_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('data') / 'resume_coco'
    load_tool('make_tiny_coco').main(['--out', str(root), '--train', '24', '--val', '8'])
    return str(root) + '/'


def train(config, work_dir, data_root, *extra, cwd, returncode=0, pythonpath=()):
    return mim('train', 'mmdet', config, '--work-dir', str(work_dir), *extra,
               '--cfg-options', *coco_data_options(data_root), cwd=cwd,
               returncode=returncode, pythonpath=pythonpath)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path, resume_coco):
    base = osp.join(REPO_ROOT, 'configs/retinanet/repghost_1_0x_tiny-coco.py')
    config = tmp_path / 'run.py'
    config.write_text(RUN_CONFIG.format(base=base, epochs=EPOCHS))
    killed_config = tmp_path / 'killed_run.py'
    killed_config.write_text(textwrap.dedent(f"""
        _base_ = './run.py'
        custom_imports = dict(imports=['mmrepghost', 'sigkill_hook'],
                              allow_failed_imports=False)
        custom_hooks = [
            dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.01,
                 update_buffers=True, priority=49),
            dict(type='RepGhostDeployHook', test=True),
            dict(type='SigkillAtIterHook', iteration={KILL_AT_ITER})
        ]
        """))
    (tmp_path / 'sigkill_hook.py').write_text(KILL_HOOK)

    full_log = train(config, tmp_path / 'full', resume_coco, cwd=str(tmp_path))

    # killed: mim reports the child's death by SIGKILL; epoch 3 never finished
    work = tmp_path / 'interrupted'
    train(killed_config, work, resume_coco, cwd=str(tmp_path), returncode=None,
          pythonpath=[tmp_path])
    saved = sorted(p.name for p in work.glob('epoch_*.pth'))
    assert saved == ['epoch_1.pth', 'epoch_2.pth'], saved
    log = next(work.glob('*/*.log')).read_text()
    assert f'Epoch(train) [3][{KILL_AT_ITER - 2 * ITERS_PER_EPOCH}/{ITERS_PER_EPOCH}]' in log
    assert f'Epoch(train) [3][{ITERS_PER_EPOCH}/{ITERS_PER_EPOCH}]' not in log
    assert (work / 'last_checkpoint').read_text().strip().endswith('epoch_2.pth')

    # resumed with the plain config: continues from epoch_2.pth (iteration 12)
    resumed_log = train(config, work, resume_coco, '--resume', cwd=str(tmp_path))
    assert re.search(r'resumed epoch: 2, iter: 12', resumed_log), resumed_log[-2000:]

    full = load_checkpoint_file(str(tmp_path / 'full' / f'epoch_{EPOCHS}.pth'))
    resumed = load_checkpoint_file(str(work / f'epoch_{EPOCHS}.pth'))
    assert resumed['meta']['iter'] == full['meta']['iter'] == EPOCHS * ITERS_PER_EPOCH
    assert resumed['meta']['epoch'] == full['meta']['epoch'] == EPOCHS
    for part in ('state_dict', 'ema_state_dict'):  # model and EMA weights
        assert list(resumed[part]) == list(full[part])
        for key, value in full[part].items():
            torch.testing.assert_close(resumed[part][key], value, rtol=0, atol=0, msg=key)
    momentum = [s['momentum_buffer'] for s in full['optimizer']['state'].values()]
    resumed_momentum = [s['momentum_buffer'] for s in resumed['optimizer']['state'].values()]
    assert len(momentum) == len(resumed_momentum) > 0
    for a, b in zip(momentum, resumed_momentum):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert resumed['param_schedulers'] == full['param_schedulers']

    # both runs end with a COCO evaluation of the last epoch (val_interval=EPOCHS)
    maps = [re.findall(r'bbox_mAP_copypaste: ([0-9. ]+)', log)[-1].split()
            for log in (full_log, resumed_log)]
    assert maps[0] == maps[1] and float(maps[0][0]) > 0, maps
