"""``Fusable``: the protocol of a module that re-parameterizes itself for deployment.

Implemented by :class:`~mmrepghost.models.RepGhostModule`,
:class:`~mmrepghost.models.RepGhostBottleneck` and :class:`~mmrepghost.models.RepGhostNet`.
A module with ``switch_to_deploy`` alone (:class:`~mmrepghost.models.ConvNormAct`, which can
always fold its BN; mmpretrain's MobileOne and RepVGG) is enough for
:func:`mmrepghost.deploy.reparameterize_model` to fuse: :func:`is_fusable` asks only that.
"""
from typing import Any, Protocol


class Fusable(Protocol):
    """A module with a multi-branch train structure and a fused deploy structure.

    Attributes:
        deploy (bool): True once the module is in the deploy structure (or was built in it).
    """

    deploy: bool

    def check_fusable(self) -> None:
        """Raise ``RuntimeError`` (naming the cause) if :meth:`switch_to_deploy` cannot fuse."""

    def switch_to_deploy(self) -> None:
        """Fuse in place, outputs unchanged in eval mode; idempotent. Calls
        :meth:`check_fusable` first, so a module that cannot be fused is left unchanged."""


def is_fusable(module: Any) -> bool:
    """Whether ``module`` can be switched to deploy: it has a callable ``switch_to_deploy``."""
    return callable(getattr(module, 'switch_to_deploy', None))
