# Mask R-CNN + FPN with RepGhostNet 1.3x, 1x schedule (Table 4: 36.1 bbox / 33.1 segm mAP).
# Only the backbone of mmdet's Mask R-CNN R-50 recipe changes, as in the paper; SyncBN in the
# backbone. ImageNet weights: convert the official checkpoint first:
#   python tools/convert_weights.py repghostnet_1_3x_231M_76.37.pth.tar \
#       checkpoints/repghostnet_1.3x_in1k.pth --from official
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', '../_base_/repghost_runtime.py',
          '../_base_/models/repghostnet_stage_channels.py']

pretrained = 'checkpoints/repghostnet_1.3x_in1k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='RepGhostNet',
        arch='1.3x',
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32
        frozen_stages=-1,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained, prefix='backbone.')))
# the FPN takes the channels of the backbone's outputs: [32, 52, 104, 208]
model['neck'] = dict(in_channels=[
    _base_.repghostnet_stage_channels['1.3x'][i] for i in model['backbone']['out_indices']])
auto_scale_lr = dict(enable=True, base_batch_size=16)
