# RepGhostNet 1.0x ImageNet classifier, weight-for-weight the official model:
# backbone -> global average pool -> FC 960->1280 (the official 1x1 "conv_head") -> ReLU
# -> dropout 0.2 -> FC 1280->1000 ("classifier"). Loss: cross-entropy with label smoothing
# 0.1 (timm's default, `smoothing: 0.1` in every official args.yaml).
model = dict(
    type='ImageClassifier',
    _scope_='mmpretrain',
    backbone=dict(type='RepGhostNet', arch='1.0x', out_indices=(4, ), deploy=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='StackedLinearClsHead',
        num_classes=1000,
        in_channels=960,
        mid_channels=[1280],
        dropout_rate=0.2,
        act_cfg=dict(type='ReLU'),
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original',
                  loss_weight=1.0),
        topk=(1, 5)))
