"""RepGhost module (Fig. 3d/3e of the paper)."""
from typing import Optional, Sequence

from mmcv.cnn import build_activation_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from ...utils.validation import check_bool, check_conv_block_args, check_odd_kernel
from ..utils import (build_conv_norm, conv_bn_kernel_bias, conv_from_kernel_bias, fuse_conv_bn_,
                     merge_kernel_bias)

#: Re-parameterization branches of Table 6, added to the cheap depthwise conv before the act:
#: ``'bn'`` a BatchNorm on the identity (the paper's default), ``'identity'`` a plain identity,
#: ``'dwconv1x1'`` a 1x1 depthwise conv + BN.
REPARAM_BRANCHES = ('bn', 'identity', 'dwconv1x1')


class RepGhostModule(BaseModule):
    """RepGhost module: feature reuse by re-parameterization instead of concatenation.

    Training (Fig. 3d)::

        x -> 1x1 conv+BN(+act) -> x1 ----------------------------+
                                   \\-> kxk dwconv+BN -> (+) <- branches(x1) -> act -> out

    Deployed (Fig. 3e): ``1x1 conv(+act) -> kxk dwconv -> act``, every BN folded into its
    conv and every branch merged into the depthwise kernel. GhostNet concatenates ``x1`` with
    the cheap features (C/2 + C/2 channels); RepGhost adds them in weight space, so the module
    keeps C channels and the concatenation's memory traffic disappears at inference.
    Implements :class:`~mmrepghost.models.Fusable`.

    Args:
        in_channels (int): input channels.
        out_channels (int): output channels C (also the channels of ``x1``).
        kernel_size (int): kernel of the primary conv. Default 1.
        dw_size (int): kernel of the cheap depthwise conv. Default 3.
        stride (int): stride of the primary conv. Default 1.
        with_act (bool): activation after the primary conv and after the add. Default True.
        reparam_branches (Sequence[str]): subset of :data:`REPARAM_BRANCHES` (Table 6); an
            empty tuple is the "no-reparam" row. Default ``('bn',)``.
        cheap_act (bool): Table 6's "+ReLU" ablation: an activation right after the cheap
            dwconv+BN, which makes the module impossible to fuse. Default False.
        norm_cfg (dict): norm layers. Default ``dict(type='BN')``.
        act_cfg (dict): activation. Default ``dict(type='ReLU')``.
        deploy (bool): build the fused inference structure directly. Default False.
        init_cfg (dict, optional): initialization config.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 1,
                 dw_size: int = 3,
                 stride: int = 1,
                 with_act: bool = True,
                 reparam_branches: Sequence[str] = ('bn', ),
                 cheap_act: bool = False,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        check_conv_block_args(in_channels, out_channels, kernel_size, stride, norm_cfg, act_cfg,
                              deploy)
        check_odd_kernel('dw_size', dw_size)
        check_bool('with_act', with_act)
        check_bool('cheap_act', cheap_act)
        if isinstance(reparam_branches, str):  # ('bn') is a str, not a tuple
            raise ValueError(f'reparam_branches={reparam_branches!r} must be a sequence of '
                             f'names from {REPARAM_BRANCHES}, e.g. ({reparam_branches!r}, )')
        reparam_branches = tuple(reparam_branches)
        unknown = [b for b in reparam_branches if b not in REPARAM_BRANCHES]
        if unknown or len(set(reparam_branches)) != len(reparam_branches):
            raise ValueError(f'reparam_branches={reparam_branches!r} is invalid: use distinct '
                             f'names from {REPARAM_BRANCHES} (an empty tuple for none)')
        if deploy and cheap_act:
            raise ValueError('cheap_act=True (Table 6 "+ReLU") cannot be built with deploy=True: '
                             'the ReLU after the depthwise conv blocks re-parameterization')

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.reparam_branches = () if deploy else reparam_branches
        self.cheap_act = cheap_act
        self.deploy = deploy

        conv, norm = build_conv_norm(in_channels, out_channels, kernel_size, stride,
                                     norm_cfg=norm_cfg, deploy=deploy)
        self.primary_conv = nn.Sequential(
            conv, norm, build_activation_layer(act_cfg) if with_act else nn.Identity())

        # Branch i computes fusion_bn[i](fusion_conv[i](x1)); the names follow the official
        # checkpoints so their weights load unchanged.
        fusion_conv, fusion_bn = [], []
        for branch in self.reparam_branches:
            if branch == 'dwconv1x1':
                conv, norm = build_conv_norm(
                    out_channels, out_channels, 1, groups=out_channels, norm_cfg=norm_cfg)
            else:
                conv = nn.Identity()
                norm = (build_norm_layer(norm_cfg, out_channels)[1]
                        if branch == 'bn' else nn.Identity())
            fusion_conv.append(conv)
            fusion_bn.append(norm)
        self.fusion_conv = nn.Sequential(*fusion_conv)
        self.fusion_bn = nn.Sequential(*fusion_bn)

        conv, norm = build_conv_norm(out_channels, out_channels, dw_size,
                                     groups=out_channels, norm_cfg=norm_cfg, deploy=deploy)
        cheap = [conv, norm] + ([build_activation_layer(act_cfg)] if cheap_act else [])
        self.cheap_operation = nn.Sequential(*cheap)
        self.act = build_activation_layer(act_cfg) if with_act else nn.Identity()

    def check_fusable(self) -> None:
        """Raise ``RuntimeError`` if :meth:`switch_to_deploy` cannot fuse this module."""
        if self.cheap_act and not self.deploy:
            raise RuntimeError(
                'RepGhostModule with cheap_act=True (Table 6 "+ReLU") cannot switch to deploy: '
                'the ReLU between the depthwise conv and the add is not linear, so the branches '
                'cannot be merged. Train with cheap_act=False to get a deployable model.')

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.primary_conv(x)
        out = self.cheap_operation(x1)
        for conv, norm in zip(self.fusion_conv, self.fusion_bn):
            out = out + norm(conv(x1))
        return self.act(out)

    def switch_to_deploy(self) -> None:
        """Fold every BN and merge the branches into the depthwise conv (idempotent)."""
        if not self.deploy:
            self.check_fusable()
            self._fuse()

    def _fuse(self) -> None:
        """:meth:`switch_to_deploy` for a caller that ran :meth:`check_fusable`."""
        if self.deploy:
            return
        fuse_conv_bn_(self.primary_conv, '0', '1')
        cheap_conv = self.cheap_operation[0]
        parts = [conv_bn_kernel_bias(cheap_conv, _as_bn(self.cheap_operation[1]))]
        for conv, norm in zip(self.fusion_conv, self.fusion_bn):
            parts.append(conv_bn_kernel_bias(
                conv if isinstance(conv, nn.Conv2d) else None, _as_bn(norm),
                channels=self.out_channels, like=cheap_conv.weight))
        kernel, bias = merge_kernel_bias(parts, cheap_conv.kernel_size)
        self.cheap_operation[0] = conv_from_kernel_bias(cheap_conv, kernel, bias)
        self.cheap_operation[1] = nn.Identity()
        self.fusion_conv = nn.Sequential()
        self.fusion_bn = nn.Sequential()
        self.reparam_branches = ()
        self.deploy = True


def _as_bn(norm: nn.Module) -> Optional[nn.Module]:
    """A norm layer of a branch, or None where the branch has none (``nn.Identity``)."""
    return None if isinstance(norm, nn.Identity) else norm
