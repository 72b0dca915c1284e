# RepGhostNet 1.11x: the 1.0x recipe at another width (paper: 75.1 top-1).
_base_ = './repghost_1_0x.py'
model = dict(backbone=dict(arch='1.11x'), head=dict(in_channels=1064))
