from .dataset_meta import (DatasetMetaWarning, checkpoint_dataset_meta,
                           dataset_meta_from_config)
from .model_loading import (LOAD_ERRORS, CheckpointMismatchError, LoadedModel, build_model,
                            load_trained_model)
from .reparameterize import find_reparameterizable, max_abs_diff, reparameterize_model
from .save import save_deployed

__all__ = [
    'LOAD_ERRORS', 'CheckpointMismatchError', 'DatasetMetaWarning', 'LoadedModel',
    'build_model', 'checkpoint_dataset_meta', 'dataset_meta_from_config',
    'find_reparameterizable', 'load_trained_model', 'max_abs_diff', 'reparameterize_model',
    'save_deployed'
]
