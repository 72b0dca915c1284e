from .repghostnet import ARCH_WIDTHS, RepGhostNet

__all__ = ['ARCH_WIDTHS', 'RepGhostNet']
