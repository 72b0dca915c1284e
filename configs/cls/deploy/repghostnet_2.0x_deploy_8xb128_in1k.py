# RepGhostNet 2.0x in its deployed (fused) structure: load checkpoints written by
# tools/reparameterize.py or RepGhostDeployHook(save_deploy=True).
_base_ = '../repghostnet_2.0x_8xb128_in1k.py'
model = dict(backbone=dict(deploy=True))
