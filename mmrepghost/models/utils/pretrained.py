"""Load ImageNet weights into a backbone: the safe loader, the prefix checked, nothing silent.

mmengine's ``Pretrained`` init loads with ``strict=False``: a classifier checkpoint given
without ``prefix='backbone.'`` (or a checkpoint of another width) loads *nothing* and training
starts from random weights with only a warning. Here every tensor the backbone has must come
from the file, with the right shape; keys the backbone does not have (the classifier head,
stages after the last requested one) are ignored.
"""
from torch import nn

from ...utils import fit_state_dict, load_checkpoint_file


def load_pretrained_(module: nn.Module, checkpoint: str, prefix: str = '') -> None:
    """Fill every tensor of ``module`` from ``checkpoint`` (keys under ``prefix``).

    Raises:
        FileNotFoundError, CheckpointError: missing, empty, corrupted or unsafe file.
        ValueError: no key under ``prefix``, or missing/misshapen tensors (the message lists
            them and suggests the prefix when the file looks like a classifier).
    """
    loaded = load_checkpoint_file(checkpoint)
    state = loaded.get('state_dict', loaded) if isinstance(loaded, dict) else {}
    if prefix and not prefix.endswith('.'):
        prefix += '.'
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise ValueError(
                f'no key of {checkpoint} starts with prefix={prefix!r}: it looks like a '
                'backbone-only file; use init_cfg=dict(type=\'Pretrained\', '
                f'checkpoint={checkpoint!r}) without prefix')
    own = module.state_dict()
    fit = fit_state_dict(own, state, allow_unexpected=True)
    missing = fit.missing
    misshapen = [f'{key}: {got} vs {want}' for key, got, want in fit.misshapen]
    if not fit.fits:
        hint = ''
        if not prefix and any(k.startswith('backbone.') for k in state):
            hint = (" It holds 'backbone.*' keys (a classifier checkpoint): add "
                    "prefix='backbone.' to the Pretrained init_cfg.")
        raise ValueError(
            f'{checkpoint} does not fit {type(module).__name__}: {len(missing)} missing '
            f'tensors (e.g. {missing[:3]}), {len(misshapen)} of another shape (e.g. '
            f'{misshapen[:3]}; another width?).{hint}')
    module.load_state_dict({k: state[k] for k in own}, strict=True)
