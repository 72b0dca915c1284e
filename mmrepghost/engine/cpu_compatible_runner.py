"""An mmengine ``Runner`` that also trains distributed on machines without a GPU.

mmengine 0.10.7's ``--launcher pytorch`` path assumes CUDA three times: ``init_dist`` calls
``torch.cuda.set_device``, the DDP wrapper gets ``device_ids=[LOCAL_RANK]``, and torch's
``SyncBatchNorm`` has no CPU kernel. On a GPU machine this runner is mmengine's ``Runner``
unchanged (NCCL, SyncBN as configured). Without CUDA it joins the process group with gloo,
wraps the model in DDP without device ids and reverts SyncBN to per-process BN (logged), so
``mim train mmdet CONFIG --launcher pytorch --gpus 2`` runs on CPU cores.
Select it with ``runner_type = 'CPUCompatibleRunner'`` in a config.
"""
import datetime
import os
from typing import Optional

import torch
from mmengine.dist import is_distributed
from mmengine.model import revert_sync_batchnorm
from mmengine.runner import Runner
from torch import distributed as torch_dist
from torch import nn

from ..registry import register_runner


@register_runner
class CPUCompatibleRunner(Runner):
    """``Runner`` whose distributed set-up falls back to gloo on CPU-only machines."""

    @property
    def _distributed_on_cpu(self) -> bool:
        return self.distributed and not torch.cuda.is_available()

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
