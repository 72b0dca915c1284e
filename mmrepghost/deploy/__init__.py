from .dataset_meta import (DatasetMetaWarning, checkpoint_dataset_meta,
                           dataset_meta_from_config)
from .deploy_config import deploy_config, write_deploy_config
from .model_loading import (LOAD_ERRORS, CheckpointMismatchError, LoadedModel, build_model,
                            load_trained_model)
from .reparameterize import (Fused, find_reparameterizable, in_train_structure, max_abs_diff,
                             reparameterize_model)
from .save import save_deployed

__all__ = [
    'LOAD_ERRORS', 'CheckpointMismatchError', 'DatasetMetaWarning', 'Fused', 'LoadedModel',
    'build_model', 'checkpoint_dataset_meta', 'dataset_meta_from_config', 'deploy_config',
    'find_reparameterizable', 'in_train_structure', 'load_trained_model', 'max_abs_diff',
    'reparameterize_model', 'save_deployed', 'write_deploy_config'
]
