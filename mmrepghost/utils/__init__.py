from .checkpoint import (SAFE_GLOBALS, CheckpointError, UnsafeCheckpointError, atomic_write,
                         load_checkpoint_file, register_safe_globals, save_checkpoint_atomic)
from .complexity import count_params_macs
from .convert import ConversionError, convert_checkpoint, convert_state_dict

__all__ = [
    'SAFE_GLOBALS', 'CheckpointError', 'ConversionError', 'UnsafeCheckpointError', 'atomic_write',
    'convert_checkpoint', 'convert_state_dict', 'count_params_macs', 'load_checkpoint_file',
    'register_safe_globals', 'save_checkpoint_atomic'
]
