# RepGhostNet 0.8x in its deployed (fused) structure: load checkpoints written by
# tools/reparameterize.py or RepGhostDeployHook(save_deploy=True).
_base_ = './repghost_0_8x.py'
model = dict(backbone=dict(deploy=True))
