"""Argument checks shared by the constructors: each error names the value and what is allowed."""
from typing import Any, Tuple


def check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')


def check_odd_kernel(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f'{name} must be a positive odd int (1, 3, 5, ...), got {value!r}')


def check_bool(name: str, value: Any) -> None:
    """Flags take True or False only: ``'no'`` or ``0`` in a config is a mistake, not a flag."""
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, got {value!r}')


def check_ratio(name: str, value: Any, low: float, high: float,
                low_inclusive: bool = True) -> None:
    """``value`` must be a real number in ``[low, high]`` (``(low, high]`` if not inclusive)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (low <= value <= high) or (not low_inclusive and value == low):
        interval = f'{"[" if low_inclusive else "("}{low}, {high}]'
        raise ValueError(f'{name} must be a number in {interval}, got {value!r}')


def check_in_range(name: str, value: Any, low: int, high: int) -> None:
    """``value`` must be an int in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f'{name} must be an int in [{low}, {high}], got {value!r}')


#: Norm layers that can be folded into a conv for deployment (the BatchNorm family).
FOLDABLE_NORMS = ('BN', 'BN2d', 'SyncBN')
#: Activations (mmcv registry names) accepted by the RepGhost layers.
ACTIVATIONS = ('ReLU', 'ReLU6', 'LeakyReLU', 'PReLU', 'ELU', 'SiLU', 'Swish', 'GELU', 'HSwish',
               'HSigmoid', 'Sigmoid', 'Tanh')


def check_layer_cfg(name: str, cfg: Any, allowed: Tuple[str, ...]) -> None:
    """``cfg`` must be a dict whose ``type`` is one of ``allowed``."""
    layer_type = cfg.get('type') if isinstance(cfg, dict) else None
    if layer_type not in allowed:
        raise ValueError(f'{name}={cfg!r} is not supported: its type must be one of {allowed}')


def check_conv_block_args(in_channels: Any, out_channels: Any, kernel_size: Any, stride: Any,
                          norm_cfg: Any, act_cfg: Any, deploy: Any) -> None:
    """The arguments every conv + norm + act block of RepGhostNet shares."""
    check_positive_int('in_channels', in_channels)
    check_positive_int('out_channels', out_channels)
    check_odd_kernel('kernel_size', kernel_size)
    check_positive_int('stride', stride)
    check_layer_cfg('norm_cfg', norm_cfg, FOLDABLE_NORMS)
    check_layer_cfg('act_cfg', act_cfg, ACTIVATIONS)
    check_bool('deploy', deploy)
