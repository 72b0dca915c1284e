from .deploy_hook import RepGhostDeployHook

__all__ = ['RepGhostDeployHook']
