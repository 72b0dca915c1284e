# RepGhostNet 1.0x in its deployed (fused) structure: load checkpoints written by
# tools/reparameterize.py or RepGhostDeployHook(save_deploy=True).
_base_ = './repghost_1_0x.py'
model = dict(backbone=dict(deploy=True))
