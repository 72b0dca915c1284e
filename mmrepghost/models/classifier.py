"""The ImageNet classifier of the official RepGhostNet, as an mmpretrain model config."""
from .backbones import RepGhostNet
from ..utils.validation import check_bool, check_positive_int, check_ratio


def repghostnet_classifier_cfg(arch: str = '1.0x', num_classes: int = 1000,
                               dropout_rate: float = 0.2, deploy: bool = False) -> dict:
    """``ImageClassifier`` config matching the official model weight for weight.

    backbone (stage 4, the final 1x1 conv) -> global average pool -> FC to 1280 (the official
    1x1 ``conv_head`` on a 1x1 map) -> ReLU -> dropout -> FC (``classifier``).
    ``configs/_base_/models/repghostnet_1.0x.py`` is this dict for 1.0x.
    """
    check_positive_int('num_classes', num_classes)
    check_ratio('dropout_rate', dropout_rate, 0, 1)
    check_bool('deploy', deploy)
    final_channels = RepGhostNet(arch=arch, init_cfg=None).out_channels[-1]
    return dict(
        type='ImageClassifier',
        _scope_='mmpretrain',  # buildable from any default scope (mmdet's included)
        backbone=dict(type='RepGhostNet', arch=arch, out_indices=(4, ), deploy=deploy),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='StackedLinearClsHead',
            num_classes=num_classes,
            in_channels=final_channels,
            mid_channels=[1280],
            dropout_rate=dropout_rate,
            act_cfg=dict(type='ReLU'),
            # timm's default label smoothing, kept by every official training run
            loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original',
                      loss_weight=1.0),
            topk=(1, 5)))
