"""RepGhost bottleneck (Fig. 4b/4c of the paper)."""
from typing import Optional, Sequence

import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from torch import Tensor, nn

from ...utils.validation import check_bool, check_odd_kernel, check_positive_int, check_ratio
from ..utils import build_conv_norm, fuse_conv_bn_
from .repghost_module import RepGhostModule
from .squeeze_excite import SqueezeExcite


class RepGhostBottleneck(BaseModule):
    """RepGhost bottleneck: RepGhost module -> [dwconv s2] -> [SE] -> RepGhost module (+ shortcut).

    Compared with GhostNet's bottleneck it keeps the input/output channels but uses "thinner"
    middle channels (``mid_channels`` is #mid of Table 2, C_mid/2 of Fig. 4) for downsampling
    and SE, and "thicker" channels for the cheap depthwise convs of the RepGhost modules.

    Training (Fig. 4b)::

        x -> ghost1 (act) -> [dwconv k s2 + BN] -> [SE] -> ghost2 (no act) -> (+) -> out
        x -> shortcut: identity, or dwconv k (stride) + BN -> 1x1 conv + BN ---^

    Deployed (Fig. 4c): the same chain with every BN folded: conv, ReLU, SE and add only.
    Implements :class:`~mmrepghost.models.Fusable`.

    Args:
        in_channels (int): input channels.
        mid_channels (int): channels inside the bottleneck (#mid in Table 2).
        out_channels (int): output channels.
        dw_kernel_size (int): kernel of the downsampling and shortcut dwconvs. Default 3.
        stride (int): 1 or 2. Default 1.
        se_ratio (float): squeeze ratio of the SE block, 0 for none. Default 0.
        shortcut (bool): keep the identity shortcut; False removes it where it is an identity
            (Table 7's ablation; downsampling shortcuts stay). Default True.
        reparam_branches, cheap_act: forwarded to both :class:`RepGhostModule`.
        norm_cfg, act_cfg (dict): norm and activation layers.
        with_cp (bool): gradient checkpointing (saves memory, costs time). Default False.
        deploy (bool): build the fused inference structure. Default False.

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H / stride, W / stride).
    """

    def __init__(self,
                 in_channels: int,
                 mid_channels: int,
                 out_channels: int,
                 dw_kernel_size: int = 3,
                 stride: int = 1,
                 se_ratio: float = 0.,
                 shortcut: bool = True,
                 reparam_branches: Sequence[str] = ('bn', ),
                 cheap_act: bool = False,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('in_channels', in_channels), ('mid_channels', mid_channels),
                            ('out_channels', out_channels)):
            check_positive_int(name, value)
        check_odd_kernel('dw_kernel_size', dw_kernel_size)
        if stride not in (1, 2):
            raise ValueError(f'stride must be 1 or 2, got {stride!r}')
        check_ratio('se_ratio (0 disables SE)', se_ratio, 0, 1)
        for name, flag in dict(shortcut=shortcut, with_cp=with_cp, deploy=deploy).items():
            check_bool(name, flag)
        self.in_channels = in_channels
        self.stride = stride
        self.with_cp = with_cp
        self.deploy = deploy
        module_cfg = dict(reparam_branches=reparam_branches, cheap_act=cheap_act,
                          norm_cfg=norm_cfg, act_cfg=act_cfg, deploy=deploy)

        self.ghost1 = RepGhostModule(in_channels, mid_channels, with_act=True, **module_cfg)
        if stride > 1:
            self.conv_dw, self.bn_dw = build_conv_norm(
                mid_channels, mid_channels, dw_kernel_size, stride, groups=mid_channels,
                norm_cfg=norm_cfg, deploy=deploy)
        self.se = SqueezeExcite(mid_channels, se_ratio, act_cfg) if se_ratio > 0 else None
        self.ghost2 = RepGhostModule(mid_channels, out_channels, with_act=False, **module_cfg)

        self.identity_shortcut = in_channels == out_channels and stride == 1
        self.use_shortcut = shortcut or not self.identity_shortcut
        if self.identity_shortcut:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                *build_conv_norm(in_channels, in_channels, dw_kernel_size, stride,
                                 groups=in_channels, norm_cfg=norm_cfg, deploy=deploy),
                *build_conv_norm(in_channels, out_channels, 1, norm_cfg=norm_cfg,
                                 deploy=deploy))

    def check_fusable(self) -> None:
        """Raise ``RuntimeError`` if :meth:`switch_to_deploy` cannot fuse this bottleneck."""
        self.ghost1.check_fusable()
        self.ghost2.check_fusable()

    def _forward(self, x: Tensor) -> Tensor:
        out = self.ghost1(x)
        if self.stride > 1:
            out = self.bn_dw(self.conv_dw(out))
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        return out + self.shortcut(x) if self.use_shortcut else out

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def switch_to_deploy(self) -> None:
        """Fold every BN (RepGhost modules, downsampling and shortcut convs); idempotent."""
        self.check_fusable()  # before anything changes
        self._fuse()

    def _fuse(self) -> None:
        """:meth:`switch_to_deploy` for a caller that ran :meth:`check_fusable`."""
        self.ghost1._fuse()
        self.ghost2._fuse()
        if self.stride > 1:
            fuse_conv_bn_(self, 'conv_dw', 'bn_dw')
        if not self.identity_shortcut:
            fuse_conv_bn_(self.shortcut, '0', '1')
            fuse_conv_bn_(self.shortcut, '2', '3')
        self.deploy = True
