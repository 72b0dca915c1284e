# RepGhostNet 1.3x: the 1.0x recipe with RandAugment instead of colour jitter, as the paper
# trains its larger widths (official args.yaml of 1.3x/1.5x/2.0x: `aa: rand-m9-mstd0.5`;
# mmpretrain's timm-style policy set is the `inc` variant). Paper: 76.4 top-1.
_base_ = './repghostnet_1.0x_8xb128_in1k.py'
model = dict(backbone=dict(arch='1.3x'), head=dict(in_channels=1248))

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         aspect_ratio_range=(3. / 4., 4. / 3.), backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2, total_level=10,
         magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.2, mode='rand', min_area_ratio=0.02,
         max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
