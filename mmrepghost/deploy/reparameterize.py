"""Model-wide re-parameterization: switch every fusable module of any model to deploy mode."""
import copy
from typing import List, Tuple

import torch
from mmengine.logging import print_log
from torch import nn


def find_reparameterizable(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The outermost submodules of ``model`` (itself included) with a ``switch_to_deploy``.

    A RepGhostNet backbone is returned once, not once per bottleneck inside it. Other
    OpenMMLab re-parameterizable modules (MobileOne, RepVGG, ...) are found the same way.
    """
    found = []
    for name, module in model.named_modules():
        if callable(getattr(module, 'switch_to_deploy', None)) and not any(
                name.startswith(prefix + '.') or prefix == '' for prefix, _ in found):
            found.append((name, module))
    return found


@torch.no_grad()
def reparameterize_model(model: nn.Module,
                         verify: bool = True,
                         input_size: Tuple[int, int] = (64, 64),
                         batch_size: int = 2,
                         logger: str = 'current') -> float:
    """Convert every re-parameterizable submodule of ``model`` to deploy mode, in place.

    Works on any mmdet/mmpretrain model (and DDP-wrapped ones): each outermost module with a
    ``switch_to_deploy`` (e.g. the RepGhostNet backbone) is fused. With ``verify``, each one
    that declares its ``in_channels`` is run in eval mode on the same random batch before and
    after fusion, and the largest absolute difference over all its outputs is returned (and
    logged). Idempotent: a model already in deploy mode gives 0.0.

    Raises:
        RuntimeError: a module cannot be fused (e.g. Table 6's "+ReLU" variant); raised before
            that module changes.
    """
    max_diff = 0.0
    for name, module in find_reparameterizable(model):
        check = getattr(module, 'check_fusable', None)
        if callable(check):
            check()
        in_channels = getattr(module, 'in_channels', None)
        if not verify or not isinstance(in_channels, int) or getattr(module, 'deploy', False):
            module.switch_to_deploy()
            print_log(f'reparameterized {name or type(module).__name__} (not verified)',
                      logger=logger)
            continue
        was_training = module.training
        reference = copy.deepcopy(module).eval()
        module.switch_to_deploy()
        module.eval()
        param = next(module.parameters(), None)
        x = torch.randn(batch_size, in_channels, *input_size,
                        device=param.device if param is not None else None)
        diff = max_abs_diff(reference(x), module(x))
        module.train(was_training)
        max_diff = max(max_diff, diff)
        print_log(f'reparameterized {name or type(module).__name__} '
                  f'({type(module).__name__}): max abs diff {diff:.3g}', logger=logger)
    return max_diff


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two tensors or (nested) tuples of tensors."""
    if isinstance(a, torch.Tensor):
        return (a.float() - b.float()).abs().max().item()
    return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
