# RepGhostNet 1.0x on ImageNet-1k, the paper's recipe (Sec. 4.1; official args.yaml):
# 300 epochs, 8 GPUs x 128, SGD lr 0.6, cosine, 5 warm-up epochs, wd 1e-5, dropout 0.2,
# label smoothing 0.1, EMA 0.9999, random erasing 0.2. Paper: 74.2 top-1 (EMA weights).
_base_ = [
    '../_base_/models/repghostnet_1.0x.py',
    '../_base_/datasets/imagenet_bs128_repghostnet.py',
    '../_base_/schedules/repghostnet_sgd_cos_300e_bs1024.py',
    'mmpretrain::_base_/default_runtime.py',
    '../_base_/repghost_runtime.py',
]
custom_hooks = [
    # timm's ModelEmaV2 with decay 0.9999 per iteration, over weights and BN statistics
    dict(type='EMAHook', momentum=1e-4, update_buffers=True, priority='ABOVE_NORMAL'),
    *_base_.custom_hooks,  # the runtime's RepGhostDeployHook: test, save the deployed network
]
randomness = dict(seed=42)
