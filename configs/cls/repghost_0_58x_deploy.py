# RepGhostNet 0.58x in its deployed (fused) structure: load checkpoints written by
# tools/reparameterize.py or RepGhostDeployHook(save_deploy=True).
_base_ = './repghost_0_58x.py'
model = dict(backbone=dict(deploy=True))
