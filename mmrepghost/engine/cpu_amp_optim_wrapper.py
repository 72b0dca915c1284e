"""Mixed-precision training on CPU: what ``--amp`` selects on a machine without a GPU.

mmdet's and mmpretrain's ``tools/train.py --amp`` set ``optim_wrapper.type='AmpOptimWrapper'``,
and mmengine 0.10.7's ``AmpOptimWrapper`` asserts a GPU (or NPU/MLU/MUSA) at construction.
:class:`~mmrepghost.engine.RepGhostRunner` builds this wrapper instead when CUDA is absent
(logged). It autocasts the forward pass to bfloat16 by default: bfloat16 keeps float32's
exponent range, so gradients need no loss scaling. ``dtype='float16'`` is accepted too and
then uses torch's dynamic CPU ``GradScaler`` (float16 overflows above 65504 and underflows
small gradients). Parameters, optimizer state and BN statistics stay float32.
"""
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from ..registry import register_optim_wrapper

#: autocast dtypes on CPU
CPU_AMP_DTYPES = ('bfloat16', 'float16')


@register_optim_wrapper
class CPUAmpOptimWrapper(AmpOptimWrapper):
    """``AmpOptimWrapper`` for CPU: ``torch.autocast('cpu', dtype)`` around the forward pass.

    Args:
        loss_scale (str | float | dict): as ``AmpOptimWrapper``; used for float16 only
            ('dynamic', a fixed scale, or ``GradScaler`` kwargs). Default 'dynamic'.
        dtype (str | torch.dtype, optional): 'bfloat16' (default) or 'float16'.
        **kwargs: ``OptimWrapper`` arguments (optimizer, clip_grad, accumulative_counts).
    """

    def __init__(self, loss_scale: Union[str, float, dict] = 'dynamic',
                 dtype: Union[str, torch.dtype, None] = None, **kwargs):
        name = 'bfloat16' if dtype is None else str(dtype).replace('torch.', '')
        if name not in CPU_AMP_DTYPES:
            raise ValueError(f'dtype={dtype!r} is not supported for mixed precision on CPU; '
                             f'allowed: {CPU_AMP_DTYPES}')
        # AmpOptimWrapper.__init__ would assert a GPU: initialize the plain wrapper instead
        OptimWrapper.__init__(self, **kwargs)
        self.cast_dtype = getattr(torch, name)
        scaled = self.cast_dtype == torch.float16
        self._scale_update_param = None
        if isinstance(loss_scale, dict):
            self.loss_scaler = torch.amp.GradScaler('cpu', enabled=scaled, **loss_scale)
        elif loss_scale == 'dynamic':
            self.loss_scaler = torch.amp.GradScaler('cpu', enabled=scaled)
        elif isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
            self._scale_update_param = float(loss_scale)
            self.loss_scaler = torch.amp.GradScaler('cpu', init_scale=loss_scale,
                                                    enabled=scaled)
        else:
            raise ValueError(f"loss_scale={loss_scale!r} is invalid: use 'dynamic', a "
                             'positive number, or a dict of GradScaler arguments')

    @contextmanager
    def optim_context(self, model: nn.Module):
        with OptimWrapper.optim_context(self, model), torch.autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield
