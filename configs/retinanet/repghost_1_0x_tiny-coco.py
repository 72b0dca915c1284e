# RetinaNet-RepGhostNet 1.0x on the generated tiny COCO set (tools/make_tiny_coco.py), from
# scratch, sized for 2 CPU cores: small images, batch 8, a short schedule, and a 64-channel
# FPN/head (a 256-channel RetinaHead alone costs ~13 GMACs per 320x320 image).
_base_ = ['./repghost_1_3x.py', '../_base_/datasets/tiny_coco.py']

data_root = 'data/tiny_coco/'
model = dict(
    backbone=dict(
        arch='1.0x',
        init_cfg=[
            dict(type='Kaiming', layer=['Conv2d']),
            dict(type='Constant', val=1, layer=['_BatchNorm'])
        ]),
    # a new width restates the neck ([40, 80, 160]; a mismatch fails when the model is built)
    neck=dict(in_channels=[_base_.repghostnet_stage_channels['1.0x'][i]
                           for i in _base_.model.backbone.out_indices], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, stacked_convs=2))

train_pipeline = _base_.tiny_coco_train_pipeline
test_pipeline = _base_.tiny_coco_test_pipeline
train_dataloader = dict(
    batch_size=8, num_workers=2, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=60),
    dict(type='CosineAnnealingLR', begin=0, end=max_epochs, by_epoch=True, eta_min=1e-4)
]
optim_wrapper = dict(optimizer=dict(lr=0.02), clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
