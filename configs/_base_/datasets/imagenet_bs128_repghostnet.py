# ImageNet as the official recipe reads it (timm's transforms, official args.yaml): random
# resized crop 224 (scale 0.08-1, ratio 3/4-4/3), horizontal flip, colour jitter 0.4, random
# erasing p=0.2 with per-pixel random fill (`--remode pixel`); 128 images per GPU.
# Test: resize the short side to 256 (crop_pct 0.875), centre crop 224, bicubic.
# timm picks bilinear or bicubic at random per training image; mmpretrain's crop takes one:
# bicubic here.
dataset_type = 'ImageNet'
data_preprocessor = dict(
    num_classes=1000,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

# pieces the other cls configs reuse as {{_base_.flip}} etc.
flip = dict(type='RandomFlip', prob=0.5, direction='horizontal')
colour_jitter = dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4)
random_erasing = dict(type='RandomErasing', erase_prob=0.2, mode='rand', min_area_ratio=0.02,
                      max_area_ratio=1 / 3, fill_color=bgr_mean, fill_std=bgr_std)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.0),
         aspect_ratio_range=(3. / 4., 4. / 3.), backend='pillow', interpolation='bicubic'),
    flip,
    colour_jitter,
    random_erasing,
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
# mmpretrain's tools/train.py and test.py default to this collate function; written here so
# that every entry point (mim train mmpretrain / mmrepghost, a Runner in code) batches alike
collate_fn = dict(type='default_collate')
train_dataloader = dict(
    batch_size=128,
    num_workers=7,
    collate_fn=collate_fn,
    dataset=dict(type=dataset_type, data_root='data/imagenet', split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128,
    num_workers=7,
    collate_fn=collate_fn,
    dataset=dict(type=dataset_type, data_root='data/imagenet', split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
