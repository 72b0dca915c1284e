"""Check, while a detector is being built, that its neck fits the RepGhostNet outputs.

A neck whose ``in_channels`` disagree with the backbone's ``out_indices`` otherwise fails
only at the first forward pass, deep inside a convolution, with a shape error that names
neither the config key nor the right channels. mmdet detectors assign ``self.backbone``
before ``self.neck``; a torch module-registration hook sees the neck being attached next to a
:class:`RepGhostNet` and compares the two at build time.
"""
from typing import Optional, Sequence

from torch import nn
from torch.nn.modules.module import register_module_module_registration_hook

from .backbones import RepGhostNet

_hook_handle = None


def check_neck_in_channels(backbone: RepGhostNet, neck: nn.Module) -> None:
    """Raise ``ValueError`` when ``neck.in_channels`` does not match ``backbone.out_channels``.

    Necks with a list of input channels (FPN, PAFPN, ChannelMapper, ...) are compared entry by
    entry; a list in reverse order is accepted for necks that consume the deepest level first
    (YOLOv3's). Necks with a single integer ``in_channels`` (YOLOF's DilatedEncoder) must match
    the last output.
    """
    expected = list(backbone.out_channels)
    got = getattr(neck, 'in_channels', None)
    if isinstance(got, int) and not isinstance(got, bool):
        if got == expected[-1]:
            return
    elif isinstance(got, Sequence) and all(isinstance(c, int) for c in got):
        if list(got) in (expected, expected[::-1]):
            return
    else:  # a neck whose inputs are described otherwise: nothing to compare
        return
    stages = ', '.join(f'{i}: {c}' for i, c in enumerate(backbone.stage_channels))
    raise ValueError(
        f'{type(neck).__name__} in_channels={got!r} do not match the backbone: '
        f'RepGhostNet(widen_factor={backbone.widen_factor}, '
        f'out_indices={backbone.out_indices}) outputs channels {expected}. '
        f'Set model.neck.in_channels={expected}, or change model.backbone.out_indices '
        f'(channels of stages {stages} at this width).')


def _on_module_registration(parent: nn.Module, name: str,
                            submodule: Optional[nn.Module]) -> None:
    if name != 'neck' or submodule is None:
        return None
    backbone = parent._modules.get('backbone')
    if isinstance(backbone, RepGhostNet):
        check_neck_in_channels(backbone, submodule)
    return None


def install_neck_check() -> None:
    """Install the build-time check once (idempotent; done by ``import mmrepghost``)."""
    global _hook_handle
    if _hook_handle is None:
        _hook_handle = register_module_module_registration_hook(_on_module_registration)
