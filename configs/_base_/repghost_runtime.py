# What every shipped config adds to its mmdet / mmpretrain recipe (listed in its `_base_`).
custom_imports = dict(imports=['mmrepghost'], allow_failed_imports=False)
# mmengine's Runner + checked checkpoint loading; without CUDA also gloo DDP and --amp (bf16)
runner_type = 'RepGhostRunner'
# test the deployed (re-parameterized) network; after training, also save it beside the
# last checkpoint (*_deploy.pth + *_deploy.py). `--cfg-options custom_hooks=[]` turns it off.
custom_hooks = [dict(type='RepGhostDeployHook', test=True, save_deploy=True)]
