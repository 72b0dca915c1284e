# RetinaNet + FPN with RepGhostNet 1.5x, 1x schedule (Table 4: 34.4 bbox mAP on COCO val).
_base_ = './repghost_1_3x.py'

pretrained = 'checkpoints/repghostnet_1.5x_in1k.pth'
model = dict(
    backbone=dict(
        arch='1.5x',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    # a new width restates the neck ([60, 120, 240]; a mismatch fails when the model is built)
    neck=dict(in_channels=[_base_.repghostnet_stage_channels['1.5x'][i]
                           for i in _base_.model.backbone.out_indices]))
