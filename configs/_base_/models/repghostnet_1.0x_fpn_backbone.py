# RepGhostNet 1.0x as a drop-in detection backbone: strides 4/8/16/32 for an FPN, with the
# shipped runtime (custom_imports, RepGhostRunner, RepGhostDeployHook). Use it as
# `backbone={{_base_.repghostnet_backbone}}` and
# `neck=dict(in_channels={{_base_.repghostnet_channels}})`.
_base_ = ['../repghost_runtime.py', './repghostnet_stage_channels.py']
repghostnet_backbone = dict(
    _delete_=True,
    type='RepGhostNet',
    arch='1.0x',
    out_indices=(0, 1, 2, 3),
    norm_cfg=dict(type='SyncBN', requires_grad=True),
    norm_eval=False,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/repghostnet_1.0x_in1k.pth',
        prefix='backbone.'))
# [24, 40, 80, 160]
repghostnet_channels = [_base_.repghostnet_stage_channels[repghostnet_backbone['arch']][i]
                        for i in repghostnet_backbone['out_indices']]
# RepGhostNet is trained on RGB images normalized with the ImageNet mean/std
repghostnet_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
