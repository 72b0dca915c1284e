# ATSS + FPN with RepGhostNet 1.0x: mmdet's recipe, backbone swapped.
_base_ = ['mmdet::atss/atss_r50_fpn_1x_coco.py',
          '../_base_/models/repghostnet_1.0x_fpn_backbone.py']
model = dict(
    backbone={{_base_.repghostnet_backbone}},
    neck=dict(in_channels={{_base_.repghostnet_channels}}))
