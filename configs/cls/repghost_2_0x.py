# RepGhostNet 2.0x: the 1.3x recipe (RandAugment) at another width (paper: 78.8 top-1).
_base_ = './repghost_1_3x.py'
model = dict(backbone=dict(arch='2.0x'), head=dict(in_channels=1920))
