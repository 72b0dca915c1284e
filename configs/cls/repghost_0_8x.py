# RepGhostNet 0.8x: the 1.0x recipe at another width (paper: 72.2 top-1).
_base_ = './repghost_1_0x.py'
model = dict(backbone=dict(arch='0.8x'), head=dict(in_channels=768))
