# RepGhostNet 2.0x in its deployed (fused) structure: load checkpoints written by
# tools/reparameterize.py or RepGhostDeployHook(save_deploy=True).
_base_ = './repghost_2_0x.py'
model = dict(backbone=dict(deploy=True))
