"""mmrepghost's ``Runner``: mmengine's, plus CPU-only training and checked checkpoint loading.

Select it with ``runner_type = 'RepGhostRunner'`` (the shipped configs do). Four additions:

1. Distributed training without a GPU. mmengine 0.10.7's ``--launcher pytorch`` path assumes
   CUDA three times: ``init_dist`` calls ``torch.cuda.set_device``, the DDP wrapper gets
   ``device_ids=[LOCAL_RANK]``, and torch's ``SyncBatchNorm`` has no CPU kernel. On a GPU
   machine this runner is mmengine's ``Runner`` unchanged (NCCL, SyncBN as configured). Without
   CUDA it joins the process group with gloo, wraps the model in DDP without device ids and
   reverts SyncBN to per-process BN (logged), so ``mim train mmdet CONFIG --launcher pytorch
   --gpus 2`` runs on CPU cores.
2. ``--amp`` without a GPU: ``AmpOptimWrapper`` asserts a GPU, so it becomes
   :class:`~mmrepghost.engine.CPUAmpOptimWrapper` (bfloat16 autocast) when CUDA is absent.
3. Checked checkpoint loading (``mim test --checkpoint``, ``load_from``, ``--resume``): local
   files go through :func:`~mmrepghost.utils.load_checkpoint_file` (weights-only unpickling
   with the allowlist; one clear error for an empty, truncated or unsafe file), and the
   backbone must take every one of its tensors from the file with the right shape. mmengine
   loads non-strictly and only warns, so a checkpoint of another width or architecture would
   be evaluated with random backbone weights; heads may still differ (fine-tuning with
   another number of classes keeps working, with mmengine's warning).
4. The built model's neck is checked against a RepGhostNet backbone
   (:func:`~mmrepghost.models.check_neck_in_channels`) before anything runs.

It is registered as ``CPUCompatibleRunner`` too, the name used by earlier configs
(``mmrepghost/registry.py``).
"""
import datetime
import os
import os.path as osp
import re
from collections import OrderedDict
from typing import Callable, Dict, Optional, Union

import torch
from mmengine.dist import is_distributed
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import load_state_dict
from torch import distributed as torch_dist
from torch import nn

from ..models import check_neck_in_channels
from ..registry import register_runner
from ..utils import CheckpointMismatchError, fit_state_dict, load_checkpoint_file


@register_runner
class RepGhostRunner(Runner):
    """``Runner`` with gloo/AMP fall-backs on CPU-only machines and checked checkpoints."""

    @property
    def _distributed_on_cpu(self) -> bool:
        return self.distributed and not torch.cuda.is_available()

    def build_model(self, model: Union[nn.Module, Dict]) -> nn.Module:
        model = super().build_model(model)
        check_neck_in_channels(model)
        return model

    def setup_env(self, env_cfg: dict) -> None:
        if self._distributed_on_cpu and not is_distributed():
            if self.launcher != 'pytorch':
                raise RuntimeError(
                    f'distributed training without CUDA supports launcher="pytorch" only, '
                    f'got launcher={self.launcher!r}')
            timeout = env_cfg.get('dist_cfg', {}).get('timeout')
            kwargs = {} if timeout is None else dict(
                timeout=datetime.timedelta(seconds=timeout))
            torch_dist.init_process_group(
                backend='gloo', rank=int(os.environ['RANK']),
                world_size=int(os.environ['WORLD_SIZE']), **kwargs)
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: Optional[dict], model: nn.Module) -> nn.Module:
        if self._distributed_on_cpu:
            model = revert_sync_batchnorm(model)
            self.logger.info(
                'Distributed on CPU (gloo): torch has no CPU SyncBatchNorm kernel, so SyncBN '
                'layers run as per-process BatchNorm; gradients are still all-reduced by DDP.')
            model_wrapper_cfg = dict(model_wrapper_cfg or dict(
                type='MMDistributedDataParallel', broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters', False)))
            model_wrapper_cfg['device_ids'] = None  # CPU modules take no device ids
        return super().wrap_model(model_wrapper_cfg, model)

    def build_optim_wrapper(self, optim_wrapper: Union[dict, OptimWrapper]):
        if (isinstance(optim_wrapper, dict) and not torch.cuda.is_available()
                and optim_wrapper.get('type') in ('AmpOptimWrapper', AmpOptimWrapper)):
            optim_wrapper = dict(optim_wrapper, type='CPUAmpOptimWrapper')
            self.logger.info('Mixed precision without CUDA: AmpOptimWrapper -> '
                             'CPUAmpOptimWrapper (torch.autocast on CPU, dtype '
                             f"{optim_wrapper.get('dtype') or 'bfloat16'})")
        return super().build_optim_wrapper(optim_wrapper)

    def load_checkpoint(self, filename: str, map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False, revise_keys: list = [(r'^module.', '')]):
        if not osp.isfile(filename):  # URLs and open-mmlab:// names: mmengine's loader
            return super().load_checkpoint(filename, map_location, strict, revise_keys)
        checkpoint = load_checkpoint_file(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        state_dict = _revised(checkpoint.get('state_dict', checkpoint), revise_keys)
        _check_backbone_fits(model, state_dict, filename)
        load_state_dict(model, state_dict, strict)  # mmengine's: warns about other heads
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


def _revised(state_dict: dict, revise_keys: list) -> dict:
    """``state_dict`` with each ``(pattern, replacement)`` applied to its keys, in order."""
    metadata = getattr(state_dict, '_metadata', OrderedDict())
    state_dict = OrderedDict(state_dict)
    for pattern, replacement in revise_keys:
        state_dict = OrderedDict((re.sub(pattern, replacement, key), value)
                                 for key, value in state_dict.items())
    state_dict._metadata = metadata  # torch's per-module versions, for _load_from_state_dict
    return state_dict


def _check_backbone_fits(model: nn.Module, state_dict: dict, filename: str) -> None:
    """Raise ``CheckpointMismatchError`` unless the file holds the whole backbone."""
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, nn.Module):
        return
    problems = fit_state_dict(backbone.state_dict(), state_dict, prefix='backbone.').summary()
    if problems:
        raise CheckpointMismatchError(
            f'{filename} does not fit the backbone of {type(model).__name__}: {problems}. A '
            'checkpoint of another width or architecture, or a deploy checkpoint for a '
            'training config (use the *_deploy.py config beside it)? Heads may differ '
            '(fine-tuning), backbones may not.')
