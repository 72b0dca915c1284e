from .model_loading import (LOAD_ERRORS, CheckpointMismatchError, LoadedModel, build_model,
                            load_trained_model)
from .reparameterize import find_reparameterizable, max_abs_diff, reparameterize_model

__all__ = [
    'LOAD_ERRORS', 'CheckpointMismatchError', 'LoadedModel', 'build_model',
    'find_reparameterizable',
    'load_trained_model', 'max_abs_diff', 'reparameterize_model'
]
