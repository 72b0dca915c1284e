# RepGhostNet 1.5x: the 1.3x recipe (RandAugment) at another width (paper: 77.5 top-1).
_base_ = './repghost_1_3x.py'
model = dict(backbone=dict(arch='1.5x'), head=dict(in_channels=1440))
