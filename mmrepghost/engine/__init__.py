from .cpu_amp_optim_wrapper import CPUAmpOptimWrapper
from .runner import RepGhostRunner
from .hooks import RepGhostDeployHook

__all__ = ['CPUAmpOptimWrapper', 'RepGhostDeployHook', 'RepGhostRunner']
