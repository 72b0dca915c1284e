# RepGhostNet 0.5x in its deployed (fused) structure: load checkpoints written by
# tools/reparameterize.py or RepGhostDeployHook(save_deploy=True).
_base_ = './repghost_0_5x.py'
model = dict(backbone=dict(deploy=True))
