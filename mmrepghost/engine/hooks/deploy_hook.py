"""``RepGhostDeployHook``: test (and optionally validate) the re-parameterized network.

RepGhost's training-time branches exist only to be fused away (Sec. 3.2 of the paper), so
the network worth measuring is the deployed one. The hook is a thin caller of
:func:`mmrepghost.deploy.reparameterize_model`:

* ``before_test_epoch`` (after the checkpoint is loaded, and after EMAHook's swap) replaces the
  runner's model by a fused copy and logs each fused module with its verified max abs
  difference;
* ``val=True``: every validation runs on a fused *copy* of the model (after EMAHook's swap,
  so it is the EMA weights when EMA is on); the model being trained, its optimizer state and
  the training loss are untouched;
* ``save_deploy=True``: after training, the deployed weights and a config building the
  deploy structure are written next to the last checkpoint (``*_deploy.pth``,
  ``*_deploy.py``, by :func:`mmrepghost.deploy.save_deployed`), ready for ``mim test``,
  export and the mmdet/mmpretrain inferencers (``meta['dataset_meta']`` is the training
  set's metainfo, as in mmengine's own checkpoints).

Works with DDP-wrapped models and SyncBN-built backbones (SyncBN folds like BN).
"""
import copy
import os.path as osp
from typing import Optional

from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper

from ...deploy import dataset_meta_from_config, reparameterize_model, save_deployed
from ...registry import register_hook
from ...utils.validation import check_bool


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@register_hook
class RepGhostDeployHook(Hook):
    """Switch every re-parameterizable module to deploy mode for testing (and validation).

    Args:
        test (bool): fuse the model before testing. Default True.
        val (bool): validate a fused copy during training. Default False.
        save_deploy (bool): after training, save the deploy checkpoint and config next to
            the last checkpoint. Default False.
        verify (bool): check outputs before/after fusion on a random batch. Default True.
    """

    # after EMAHook (NORMAL) has swapped in the EMA weights for validation and testing
    priority = 'LOW'

    def __init__(self,
                 test: bool = True,
                 val: bool = False,
                 save_deploy: bool = False,
                 verify: bool = True) -> None:
        for name, value in dict(test=test, val=val, save_deploy=save_deploy,
                                verify=verify).items():
            check_bool(f'RepGhostDeployHook {name}', value)
        self.test = test
        self.val = val
        self.save_deploy = save_deploy
        self.verify = verify
        self._training_model = None

    def _deployed_copy(self, runner, model, what: str):
        """A fused copy of ``model`` and what was fused (falsy: nothing, with a warning)."""
        deployed = copy.deepcopy(model)  # the model given stays as is
        fused = reparameterize_model(deployed, verify=self.verify, logger=runner.logger)
        if fused:
            runner.logger.info(
                f'RepGhostDeployHook: {what} model deployed ({", ".join(fused.modules)}), no '
                f're-parameterization branches left, max abs diff {fused.max_abs_diff:.3g}')
        return deployed, fused

    def before_test_epoch(self, runner) -> None:
        # A fused copy replaces the runner's model (and stays after the test): EMAHook swaps
        # its averaged weights in before this hook and back after the test, parameter by
        # parameter, which the fused structure would not survive.
        if self.test:
            runner.model, _ = self._deployed_copy(runner, _unwrap(runner.model), 'test')

    def before_val_epoch(self, runner) -> None:
        if self.val:
            self._training_model = runner.model
            runner.model, _ = self._deployed_copy(runner, _unwrap(runner.model), 'validation')

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        if self._training_model is not None:
            runner.model = self._training_model
            self._training_model = None

    def after_train(self, runner) -> None:
        if not self.save_deploy or runner.rank != 0:
            return
        last = osp.join(runner.work_dir, 'last_checkpoint')
        if osp.isfile(last):
            with open(last) as f:
                stem = osp.splitext(f.read().strip())[0]
        else:
            stem = osp.join(runner.work_dir, f'epoch_{runner.epoch}')
        deployed, fused = self._deployed_copy(runner, _saved_weights(runner), 'final')
        if not fused:
            return
        meta = dict(epoch=runner.epoch, iter=runner.iter,
                    dataset_meta=_dataset_meta(runner))
        save_deployed(deployed, runner.cfg, f'{stem}_deploy.pth', meta, overwrite=True)
        runner.logger.info(f'RepGhostDeployHook: wrote {stem}_deploy.pth and {stem}_deploy.py')


def _saved_weights(runner):
    """The model whose weights the last checkpoint holds: EMAHook's average when EMA is on."""
    return next((hook.ema_model.module for hook in runner.hooks if isinstance(hook, EMAHook)),
                _unwrap(runner.model))


def _dataset_meta(runner) -> dict:
    """What mmengine's Runner writes into its checkpoints: the training set's metainfo."""
    loader = runner.train_dataloader  # built once training ran; a dict before
    metainfo = getattr(getattr(loader, 'dataset', None), 'metainfo', None)
    return metainfo if metainfo else dataset_meta_from_config(runner.cfg)
