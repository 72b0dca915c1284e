"""RepGhostNet backbone (Table 2 of the paper) for mmpretrain and mmdet."""
import os.path as osp
from typing import List, Optional, Sequence, Tuple, Union

from mmcv.cnn import build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ...registry import register_model
from ..layers import ConvNormAct, RepGhostBottleneck
from ...utils.validation import (ACTIVATIONS, FOLDABLE_NORMS, check_bool, check_in_range,
                                 check_layer_cfg, check_positive_int)
from ..utils import build_conv_norm, fuse_conv_bn_, make_divisible
from ..utils.pretrained import load_pretrained_

#: The eight widths of the paper (Table 3) and their aliases.
ARCH_WIDTHS = {
    '0.5x': 0.5, '0.58x': 0.58, '0.8x': 0.8, '1.0x': 1.0,
    '1.11x': 1.11, '1.3x': 1.3, '1.5x': 1.5, '2.0x': 2.0,
}


@register_model
class RepGhostNet(BaseModule):
    """RepGhostNet backbone.

    A 3x3 stem conv, 16 RepGhost bottlenecks and a 1x1 conv, scaled by a width multiplier.
    The bottlenecks form the paper's five groups by input size, the last bottleneck of each
    of the first four downsampling by 2; the output of group ``i`` is stage ``i``:

    ====== ======== ======================= =========================
    stage  stride   channels (1.0x)         ``blocks`` entries
    ====== ======== ======================= =========================
    0      4        24                      0, 1
    1      8        40                      2, 3
    2      16       80                      4, 5
    3      32       160                     6, 7
    4      32       960 (the final 1x1)     8, 9
    ====== ======== ======================= =========================

    Stages 0-3 are the detection features (the same points as timm's ``features_only``);
    stage 4 feeds the classifier (pool -> 1x1 conv to 1280 -> ReLU -> dropout -> FC, see
    ``configs/cls``). Submodule names equal the official and timm checkpoints' keys, so their
    ImageNet weights load with only a ``backbone.`` prefix (``tools/convert_weights.py``).
    Implements :class:`~mmrepghost.models.Fusable`.

    Args:
        arch (str): width alias, one of :data:`ARCH_WIDTHS` (``'0.5x'`` ... ``'2.0x'``).
        widen_factor (float, optional): the same width as a number (e.g. ``1.3``); one of the
            paper's eight. Overrides ``arch`` when given.
        out_indices (Sequence[int]): stages to output (0-4, negative counts from the end).
            Default ``(4, )``. Blocks after the last requested stage are not built.
        frozen_stages (int): freeze the stem (0) and stages ``< frozen_stages``; -1 freezes
            nothing. Range [-1, 5]. Default -1.
        shortcut (bool): identity shortcuts (Table 7 ablation when False). Default True.
        reparam_branches (Sequence[str]): RepGhost module branches (Table 6). Default ('bn',).
        cheap_act (bool): Table 6 "+ReLU" variant (not deployable). Default False.
        in_channels (int): input image channels. Default 3.
        norm_cfg (dict): norm layers, e.g. ``dict(type='SyncBN')``. Default BN.
        act_cfg (dict): activation. Default ReLU.
        norm_eval (bool): keep BN layers in eval mode while training (frozen statistics).
        with_cp (bool): gradient checkpointing in the bottlenecks.
        deploy (bool): build the fused inference structure (all BNs folded).
        init_cfg (dict | list[dict], optional): initialization; use
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` for ImageNet weights.

    Shapes: (N, 3, H, W) -> tuple of (N, C_i, H / s_i, W / s_i) for the requested stages.
    """

    #: One row per entry of ``self.blocks``; each row lists its bottlenecks as
    #: (dw kernel, #mid, #out, SE ratio, stride) of Table 2 at width 1.0.
    arch_setting = [
        [[3, 8, 16, 0, 1]],
        [[3, 24, 24, 0, 2]],
        [[3, 36, 24, 0, 1]],
        [[5, 36, 40, 0.25, 2]],
        [[5, 60, 40, 0.25, 1]],
        [[3, 120, 80, 0, 2]],
        [[3, 100, 80, 0, 1], [3, 120, 80, 0, 1], [3, 120, 80, 0, 1],
         [3, 240, 112, 0.25, 1], [3, 336, 112, 0.25, 1]],
        [[5, 336, 160, 0.25, 2]],
        [[5, 480, 160, 0, 1], [5, 480, 160, 0.25, 1], [5, 480, 160, 0, 1],
         [5, 480, 160, 0.25, 1]],
    ]
    #: Index in ``self.blocks`` of the last entry of each stage (entry 9 is the final 1x1 conv).
    stage_ends = (1, 3, 5, 7, 9)
    stem_channels = 16

    def __init__(self,
                 arch: str = '1.0x',
                 widen_factor: Optional[float] = None,
                 out_indices: Sequence[int] = (4, ),
                 frozen_stages: int = -1,
                 shortcut: bool = True,
                 reparam_branches: Sequence[str] = ('bn', ),
                 cheap_act: bool = False,
                 in_channels: int = 3,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 deploy: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg=init_cfg)
        self.widen_factor = self._resolve_width(arch, widen_factor)
        num_stages = len(self.stage_ends)
        self.out_indices = self._resolve_out_indices(out_indices, num_stages)
        check_in_range('frozen_stages', frozen_stages, -1, num_stages)
        self.frozen_stages = frozen_stages
        check_layer_cfg('norm_cfg', norm_cfg, FOLDABLE_NORMS)
        check_layer_cfg('act_cfg', act_cfg, ACTIVATIONS)
        check_positive_int('in_channels', in_channels)
        for name, flag in dict(shortcut=shortcut, cheap_act=cheap_act, norm_eval=norm_eval,
                               with_cp=with_cp, deploy=deploy).items():
            check_bool(name, flag)
        self.in_channels = in_channels
        self.norm_eval = norm_eval
        self.deploy = deploy

        width = self.widen_factor
        stem_channels = make_divisible(self.stem_channels * width, 4)
        self.conv_stem, self.bn1 = build_conv_norm(
            in_channels, stem_channels, 3, stride=2, norm_cfg=norm_cfg, deploy=deploy)
        self.act1 = build_activation_layer(act_cfg)

        num_entries = self.stage_ends[max(self.out_indices)] + 1
        entries, channels = [], stem_channels
        for row in self.arch_setting[:num_entries]:
            bottlenecks = []
            for kernel, mid, out, se_ratio, stride in row:
                out_channels = make_divisible(out * width, 4)
                bottlenecks.append(RepGhostBottleneck(
                    channels, make_divisible(mid * width, 4), out_channels, kernel, stride,
                    se_ratio=se_ratio, shortcut=shortcut, reparam_branches=reparam_branches,
                    cheap_act=cheap_act, norm_cfg=norm_cfg, act_cfg=act_cfg, with_cp=with_cp,
                    deploy=deploy))
                channels = out_channels
            entries.append(nn.Sequential(*bottlenecks))
        #: Channels of all five stages at this width, whether built or not.
        self.stage_channels = self.channels_of_stages(width)
        if num_entries > len(self.arch_setting):  # the final 1x1 conv (stage 4)
            entries.append(nn.Sequential(ConvNormAct(
                channels, self.stage_channels[-1], 1, norm_cfg=norm_cfg, act_cfg=act_cfg,
                deploy=deploy)))
        self.blocks = nn.Sequential(*entries)
        #: Output channels of every requested stage, in order (for necks and heads).
        self.out_channels = tuple(self.stage_channels[i] for i in self.out_indices)
        self._freeze_stages()

    @classmethod
    def channels_of_stages(cls, widen_factor: float) -> Tuple[int, ...]:
        """Output channels of stages 0-4 at ``widen_factor`` (e.g. 1.0 -> 24/40/80/160/960)."""
        bottleneck_stages = [
            make_divisible(cls.arch_setting[end][-1][2] * widen_factor, 4)
            for end in cls.stage_ends[:-1]
        ]
        # the final 1x1 conv doubles the widest expansion of the last bottleneck
        final = make_divisible(cls.arch_setting[-1][-1][1] * widen_factor * 2, 4)
        return (*bottleneck_stages, final)

    @staticmethod
    def _resolve_width(arch, widen_factor) -> float:
        if widen_factor is not None:
            if widen_factor not in ARCH_WIDTHS.values():
                raise ValueError(f'widen_factor={widen_factor!r} is not a width of the paper; '
                                 f'allowed: {sorted(ARCH_WIDTHS.values())}')
            return float(widen_factor)
        if arch not in ARCH_WIDTHS:
            raise ValueError(f'arch={arch!r} is unknown; allowed: {list(ARCH_WIDTHS)} '
                             '(or widen_factor=<one of their numbers>)')
        return ARCH_WIDTHS[arch]

    @staticmethod
    def _resolve_out_indices(out_indices, num_stages) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if not isinstance(out_indices, Sequence) or len(out_indices) == 0:
            raise ValueError(f'out_indices must be a non-empty sequence of ints in '
                             f'[{-num_stages}, {num_stages - 1}], got {out_indices!r}')
        resolved = []
        for index in out_indices:
            check_in_range('every out_indices entry', index, -num_stages, num_stages - 1)
            resolved.append(index % num_stages)
        if len(set(resolved)) != len(resolved):
            raise ValueError(f'out_indices={tuple(out_indices)!r} names a stage twice')
        return tuple(sorted(resolved))

    def init_weights(self) -> None:
        """Initialize; ``Pretrained`` weights go through :func:`load_pretrained_`.

        Every tensor must come from the file (mmengine's own ``Pretrained`` would start from
        random weights with a warning when the prefix is wrong); a missing local file gets a
        how-to, not a traceback. URLs are left to mmengine.
        """
        init_cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        local = [cfg for cfg in init_cfgs if isinstance(cfg, dict)
                 and cfg.get('type') == 'Pretrained' and '://' not in str(cfg.get('checkpoint'))]
        for cfg in local:
            if not osp.isfile(str(cfg['checkpoint'])):
                raise FileNotFoundError(
                    f'RepGhostNet pretrained checkpoint {cfg["checkpoint"]!r} does not exist. '
                    'Convert the official ImageNet weights with `python tools/convert_weights.py '
                    f'<official .pth.tar> {cfg["checkpoint"]} --from official` (or timm weights '
                    'with --from timm), or train from scratch with `--cfg-options '
                    'model.backbone.init_cfg=None`.')
        if local:
            self.init_cfg = [cfg for cfg in init_cfgs if cfg not in local] or None
            super().init_weights()
            for cfg in local:
                load_pretrained_(self, cfg['checkpoint'], cfg.get('prefix') or '')
            self.init_cfg = init_cfgs if len(init_cfgs) > 1 else init_cfgs[0]
            return
        super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.act1(self.bn1(self.conv_stem(x)))
        outs = []
        out_entries = {self.stage_ends[i] for i in self.out_indices}
        for i, entry in enumerate(self.blocks):
            x = entry(x)
            if i in out_entries:
                outs.append(x)
        return tuple(outs)

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.conv_stem, self.bn1]
        if self.frozen_stages > 0:
            frozen += list(self.blocks[:self.stage_ends[self.frozen_stages - 1] + 1])
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'RepGhostNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self

    def check_fusable(self) -> None:
        """Raise ``RuntimeError`` if some module cannot be re-parameterized (Table 6 +ReLU)."""
        for module in self.modules():
            if isinstance(module, RepGhostBottleneck):
                module.check_fusable()

    def switch_to_deploy(self) -> None:
        """Fold every BN and merge every RepGhost branch, in place (idempotent).

        Afterwards the backbone holds only convs, ReLUs, SE blocks and adds. Nothing changes
        when a module cannot be fused (the error is raised first).
        """
        self.check_fusable()
        fuse_conv_bn_(self, 'conv_stem', 'bn1')
        for module in self.blocks.modules():
            if isinstance(module, RepGhostBottleneck):
                module._fuse()  # checked above, once
            elif isinstance(module, ConvNormAct):
                module.switch_to_deploy()
        self.deploy = True
