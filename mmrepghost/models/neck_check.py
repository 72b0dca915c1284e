"""Check that a built detector's neck fits the RepGhostNet outputs.

A neck whose ``in_channels`` disagree with the backbone's ``out_indices`` otherwise fails
only at the first forward pass, deep inside a convolution, with a shape error that names
neither the config key nor the right channels. Called explicitly where mmrepghost builds
models: :meth:`mmrepghost.engine.RepGhostRunner.build_model` (``mim train``/``mim test``)
and :func:`mmrepghost.deploy.build_model` (the tools).
"""
from typing import Sequence

from torch import nn

from .backbones import RepGhostNet


def check_neck_in_channels(model: nn.Module) -> None:
    """Raise ``ValueError`` when ``model.neck.in_channels`` do not fit ``model.backbone``.

    Only a model whose ``backbone`` is a :class:`RepGhostNet` and whose ``neck`` has integer
    ``in_channels`` is checked; anything else passes. Necks with a list of input channels
    (FPN, PAFPN, ChannelMapper, ...) are compared entry by entry; a list in reverse order is
    accepted for necks that consume the deepest level first (YOLOv3's). Necks with a single
    integer ``in_channels`` (YOLOF's DilatedEncoder) must match the last output.
    """
    backbone = getattr(model, 'backbone', None)
    neck = getattr(model, 'neck', None)
    if not isinstance(backbone, RepGhostNet) or neck is None:
        return
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
