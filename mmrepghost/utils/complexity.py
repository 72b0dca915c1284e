"""Params and FLOPs by the paper's rule: convolution and fully-connected layers only.

The official ``tools.py`` (a modified thop) counts conv and FC layers and ignores BN, so the
train and deploy structures of RepGhostNet count the same except for the folded biases. FLOPs
are multiply-adds (MACs), as in the paper's tables.
"""
from typing import Tuple

import torch
from torch import nn

COUNTED = (nn.Conv2d, nn.Linear)


@torch.no_grad()
def count_params_macs(model: nn.Module, inputs: torch.Tensor) -> Tuple[int, int]:
    """``(params, macs)`` of the conv/FC layers that run in ``model(inputs)``.

    A conv producing ``N*C_out*H*W`` outputs costs ``C_in / groups * k_h * k_w`` MACs per
    output; a linear layer ``in_features`` per output. Biases add no MACs.
    """
    macs = 0
    ran = set()

    def hook(module, _, output):
        nonlocal macs
        ran.add(module)
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.weight[0, 0].numel()
        else:
            per_output = module.in_features
        macs += output.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, COUNTED)]
    was_training = model.training
    try:
        model.eval()
        model(inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for m in ran for p in m.parameters(recurse=False))
    return params, macs
