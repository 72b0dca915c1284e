from .cpu_compatible_runner import CPUCompatibleRunner
from .hooks import RepGhostDeployHook

__all__ = ['CPUCompatibleRunner', 'RepGhostDeployHook']
