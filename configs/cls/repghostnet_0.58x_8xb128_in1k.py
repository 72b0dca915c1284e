# RepGhostNet 0.58x: the 1.0x recipe at another width (paper: 68.9 top-1).
_base_ = './repghostnet_1.0x_8xb128_in1k.py'
model = dict(backbone=dict(arch='0.58x'), head=dict(in_channels=556))
