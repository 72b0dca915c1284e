# The paper's schedule (Sec. 4.1, official args.yaml): SGD momentum 0.9, lr 0.6 for a global
# batch of 1024 (8 GPUs x 128; `auto_scale_lr` rescales other batches), weight decay 1e-5 on
# weights only (timm's optimizer skips biases and BN), 5 linear warm-up epochs from 1e-4, then
# cosine to 1e-5 over the remaining 295 of 300 epochs (per epoch, as timm steps it).
# Mixed precision as the paper trained: add `--amp` to `mim train` (CUDA).
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.6, momentum=0.9, weight_decay=1e-5, nesterov=False),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    # updated every iteration (mmengine steps an epoch-based LinearLR only between epochs and
    # would stop one step short of the full rate)
    dict(type='LinearLR', start_factor=1e-4 / 0.6, end_factor=1.0, by_epoch=True, begin=0,
         end=5, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5, end=300),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
