from .model_loading import (CheckpointMismatchError, LoadedModel, build_model,
                            load_trained_model)
from .reparameterize import find_reparameterizable, max_abs_diff, reparameterize_model

__all__ = [
    'CheckpointMismatchError', 'LoadedModel', 'build_model', 'find_reparameterizable',
    'load_trained_model', 'max_abs_diff', 'reparameterize_model'
]
