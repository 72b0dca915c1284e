# RepGhostNet 1.0x on the generated tiny ImageNet-layout set (tools/make_tiny_imagenet.py:
# 8 classes of shapes x colour families, 72 px images), sized for 2 CPU cores. It inherits the
# ImageNet recipe and only shrinks: 64 px crops (scale 0.35-1, so the shape stays in view),
# batch 64, 30 epochs with 1 warm-up epoch, lr 0.2, and an EMA that averages over ~50
# iterations instead of ~10k (momentum 0.02, as this run has ~300 iterations).
_base_ = './repghost_1_0x.py'

data_root = 'data/tiny_imagenet'
classes = ('warm_disc', 'cool_disc', 'warm_triangle', 'cool_triangle', 'warm_rectangle',
           'cool_rectangle', 'warm_ring', 'cool_ring')
model = dict(head=dict(num_classes=len(classes), topk=(1, )))
data_preprocessor = dict(num_classes=len(classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.35, 1.0),
         backend='pillow', interpolation='bicubic'),
    {{_base_.flip}},
    {{_base_.colour_jitter}},
    {{_base_.random_erasing}},
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=72, edge='short', backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
dataset = dict(data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(batch_size=64, num_workers=2, persistent_workers=True,
                        dataset=dict(pipeline=train_pipeline, **dataset))
val_dataloader = dict(batch_size=100, num_workers=2, persistent_workers=True,
                      dataset=dict(pipeline=test_pipeline, **dataset))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

max_epochs = 30
optim_wrapper = dict(optimizer=dict(lr=0.2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-4, by_epoch=True, begin=1, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
custom_hooks = [
    dict(type='EMAHook', momentum=0.02, update_buffers=True, priority='ABOVE_NORMAL'),
    *_base_.custom_hooks[1:],  # the recipe's hooks after its EMA: RepGhostDeployHook
]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
