# Mask R-CNN + FPN with RepGhostNet 1.5x, 1x schedule (Table 4: 36.9 bbox / 33.5 segm mAP).
_base_ = './repghost_1_3x.py'

pretrained = 'checkpoints/repghostnet_1.5x_in1k.pth'
model = dict(
    backbone=dict(
        arch='1.5x',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[36, 60, 120, 240]))
