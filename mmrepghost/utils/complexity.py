"""Params and FLOPs as the paper's Table 3 counts them.

FLOPs: multiply-adds (MACs) of the convolution and fully-connected layers only, no BN (the
official ``tools.py``, a modified thop). Params: every learnable parameter, BN affine included:
that is what Table 3 and timm report (1.0x: 4.074M; conv + FC alone would be 4.040M).
Deploying removes the BN parameters and adds conv biases, so the deploy count is lower.
"""
from typing import Callable, Optional, Tuple

import torch
from torch import nn

COUNTED = (nn.Conv2d, nn.Linear)


@torch.no_grad()
def count_params_macs(model: nn.Module,
                      inputs: torch.Tensor,
                      forward: Optional[Callable[[torch.Tensor], object]] = None
                      ) -> Tuple[int, int]:
    """``(params, macs)``: all parameters of ``model``, MACs of its conv/FC layers.

    ``forward(inputs)`` runs the model (default ``model(inputs)``; detectors need their
    data samples, see ``tools/get_flops.py``).

    A conv producing ``N*C_out*H*W`` outputs costs ``C_in / groups * k_h * k_w`` MACs per
    output; a linear layer ``in_features`` per output. Biases add no MACs.
    """
    macs = 0

    def hook(module, _, output):
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.weight[0, 0].numel()
        else:
            per_output = module.in_features
        macs += output.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, COUNTED)]
    was_training = model.training
    try:
        model.eval()
        (forward or model)(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in model.parameters())
    return params, macs
