# FCOS + FPN (GN head) with RepGhostNet 1.0x: mmdet's recipe, backbone swapped.
_base_ = ['mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
          '../_base_/models/repghostnet_1.0x_fpn_backbone.py']
model = dict(
    data_preprocessor={{_base_.repghostnet_preprocessor}},
    backbone={{_base_.repghostnet_backbone}},
    neck=dict(in_channels={{_base_.repghostnet_channels}}))
