from .checkpoint import (SAFE_GLOBALS, CheckpointError, UnsafeCheckpointError, atomic_write,
                         load_checkpoint_file, register_safe_globals, save_checkpoint_atomic)
from .complexity import count_params_macs
from .state_dict_fit import CheckpointMismatchError, StateDictFit, fit_state_dict

__all__ = [
    'SAFE_GLOBALS', 'CheckpointError', 'CheckpointMismatchError', 'StateDictFit',
    'UnsafeCheckpointError', 'atomic_write', 'count_params_macs', 'fit_state_dict',
    'load_checkpoint_file', 'register_safe_globals', 'save_checkpoint_atomic'
]
