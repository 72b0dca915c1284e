# The generated tiny COCO set (tools/make_tiny_coco.py) at 320x320, for the *_tiny-coco
# configs. Their other base, the mmdet recipe, already has train_pipeline and test_pipeline,
# and mmengine refuses a key in two bases, so a tiny config assigns these itself:
# `train_pipeline = _base_.tiny_coco_train_pipeline` (Mask R-CNN adds with_mask=True).
image_scale = (320, 320)
tiny_coco_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
tiny_coco_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
