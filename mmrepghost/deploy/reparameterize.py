"""Model-wide re-parameterization: switch every fusable module of any model to deploy mode."""
import copy
import logging
from dataclasses import dataclass
from typing import List, Tuple

import torch
from mmengine.logging import print_log
from torch import nn

from ..models import Fusable, is_fusable


@dataclass(frozen=True)
class Fused:
    """What :func:`reparameterize_model` did; falsy when the model had nothing fusable.

    Attributes:
        modules: names of the outermost fusable modules (the class name for the model
            itself), all in deploy mode now.
        max_abs_diff: the largest verified output difference before/after fusion (0.0 when
            nothing was verified).
    """

    modules: Tuple[str, ...] = ()
    max_abs_diff: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.modules)


def find_reparameterizable(model: nn.Module) -> List[Tuple[str, Fusable]]:
    """The outermost :class:`~mmrepghost.models.Fusable` submodules of ``model`` (itself
    included).

    A RepGhostNet backbone is returned once, not once per bottleneck inside it. Other
    OpenMMLab re-parameterizable modules (MobileOne, RepVGG, ...) are found the same way.
    """
    found = []
    for name, module in model.named_modules():
        if is_fusable(module) and not any(
                name.startswith(prefix + '.') or prefix == '' for prefix, _ in found):
            found.append((name, module))
    return found


def _named(found: List[Tuple[str, Fusable]]) -> List[Tuple[str, Fusable]]:
    """``''`` (the model itself) named by its class."""
    return [(name or type(module).__name__, module) for name, module in found]


def _with_branches(found: List[Tuple[str, Fusable]]) -> List[str]:
    return [name for name, module in found if not getattr(module, 'deploy', True)]


def in_train_structure(model: nn.Module) -> List[str]:
    """Names of the fusable modules of ``model`` that still have training branches."""
    return _with_branches(_named(find_reparameterizable(model)))


@torch.no_grad()
def reparameterize_model(model: nn.Module,
                         verify: bool = True,
                         input_size: Tuple[int, int] = (64, 64),
                         batch_size: int = 2,
                         logger: str = 'current') -> Fused:
    """Convert every re-parameterizable submodule of ``model`` to deploy mode, in place.

    Works on any mmdet/mmpretrain model (and DDP-wrapped ones): each outermost module with a
    ``switch_to_deploy`` (e.g. the RepGhostNet backbone) is fused. With ``verify``, each one
    that declares its ``in_channels`` is run in eval mode on the same random batch before and
    after fusion; the largest absolute difference over all outputs is returned in
    :class:`Fused` (and each module's is logged). Idempotent: a model already in deploy mode
    gives ``max_abs_diff`` 0.0. A model without fusable modules gives an empty (falsy)
    :class:`Fused` and a logged warning.

    Raises:
        RuntimeError: a module cannot be fused (e.g. Table 6's "+ReLU" variant; raised by its
            ``switch_to_deploy`` before that module changes), or still has training branches
            after ``switch_to_deploy``.
    """
    found = _named(find_reparameterizable(model))
    if not found:
        print_log(f'nothing to re-parameterize: no module of {type(model).__name__} has a '
                  'switch_to_deploy', logger=logger, level=logging.WARNING)
        return Fused()
    max_diff = 0.0
    for name, module in found:
        in_channels = getattr(module, 'in_channels', None)
        if not verify or not isinstance(in_channels, int) or getattr(module, 'deploy', False):
            module.switch_to_deploy()
            print_log(f'reparameterized {name} (not verified)', logger=logger)
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
        print_log(f'reparameterized {name} ({type(module).__name__}): max abs diff {diff:.3g}',
                  logger=logger)
    left = _with_branches(found)
    if left:
        raise RuntimeError(f'{left} still have training branches after switch_to_deploy')
    return Fused(tuple(name for name, _ in found), max_diff)


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two tensors or (nested) tuples of tensors."""
    if isinstance(a, torch.Tensor):
        return (a.float() - b.float()).abs().max().item()
    return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
