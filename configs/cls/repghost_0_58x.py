# RepGhostNet 0.58x: the 1.0x recipe at another width (paper: 68.9 top-1).
_base_ = './repghost_1_0x.py'
model = dict(backbone=dict(arch='0.58x'), head=dict(in_channels=556))
