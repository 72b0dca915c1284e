# RepGhostNet 1.5x in its deployed (fused) structure: load checkpoints written by
# tools/reparameterize.py or RepGhostDeployHook(save_deploy=True).
_base_ = '../repghostnet_1.5x_8xb128_in1k.py'
model = dict(backbone=dict(deploy=True))
