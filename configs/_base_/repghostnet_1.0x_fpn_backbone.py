# RepGhostNet 1.0x as a drop-in detection backbone: strides 4/8/16/32 for an FPN with
# in_channels=[24, 40, 80, 160]. Use it as `backbone={{_base_.repghostnet_backbone}}`.
custom_imports = dict(imports=['mmrepghost'], allow_failed_imports=False)
# mmengine's Runner + checked checkpoint loading; without CUDA also gloo DDP and --amp (bf16)
runner_type = 'RepGhostRunner'
# test the deployed (re-parameterized) network; after training, also save it beside the
# last checkpoint (*_deploy.pth + *_deploy.py). `--cfg-options custom_hooks=[]` turns it off.
custom_hooks = [dict(type='RepGhostDeployHook', test=True, save_deploy=True)]
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
repghostnet_channels = [24, 40, 80, 160]
# RepGhostNet is trained on RGB images normalized with the ImageNet mean/std
repghostnet_preprocessor = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
