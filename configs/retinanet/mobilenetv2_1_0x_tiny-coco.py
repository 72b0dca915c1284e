# Baseline for the tiny RepGhostNet config: the same RetinaNet, data and schedule, with mmdet's
# MobileNetV2 1.0x (from scratch) at the same strides 8/16/32 (layers 2/4/6: 32/96/320 ch).
_base_ = './repghost_1_0x_tiny-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        widen_factor=1.0,
        out_indices=(2, 4, 6),
        act_cfg=dict(type='ReLU6'),
        norm_cfg=dict(type='BN', requires_grad=True)),
    neck=dict(in_channels=[32, 96, 320]))
custom_hooks = []  # nothing to re-parameterize in MobileNetV2
