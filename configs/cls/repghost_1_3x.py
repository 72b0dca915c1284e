# RepGhostNet 1.3x: the 1.0x recipe with RandAugment instead of colour jitter, as the paper
# trains its larger widths (official args.yaml of 1.3x/1.5x/2.0x: `aa: rand-m9-mstd0.5`;
# mmpretrain's timm-style policy set is the `inc` variant). Paper: 76.4 top-1.
_base_ = './repghost_1_0x.py'
model = dict(backbone=dict(arch='1.3x'), head=dict(in_channels=1248))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         aspect_ratio_range=(3. / 4., 4. / 3.), backend='pillow', interpolation='bicubic'),
    {{_base_.flip}},
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),  # BGR mean
    {{_base_.random_erasing}},
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
