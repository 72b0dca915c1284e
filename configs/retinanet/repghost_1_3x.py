# RetinaNet + FPN with RepGhostNet 1.3x, 1x schedule (Table 4: 33.5 bbox mAP on COCO val).
# Only the backbone of mmdet's RetinaNet R-50 recipe changes, as in the paper; SyncBN in the
# backbone. ImageNet weights: convert the official checkpoint first:
#   python tools/convert_weights.py repghostnet_1_3x_231M_76.37.pth.tar \
#       checkpoints/repghostnet_1.3x_in1k.pth --from official
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', '../_base_/repghost_runtime.py',
          '../_base_/models/repghostnet_stage_channels.py']

arch = '1.3x'
pretrained = 'checkpoints/repghostnet_1.3x_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RepGhostNet',
        arch=arch,
        out_indices=(1, 2, 3),  # strides 8/16/32
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
# the FPN takes the channels of the backbone's outputs: [52, 104, 208]
model['neck'] = dict(in_channels=[
    _base_.repghostnet_stage_channels[arch][i] for i in model['backbone']['out_indices']],
    start_level=0)
auto_scale_lr = dict(enable=True, base_batch_size=16)
