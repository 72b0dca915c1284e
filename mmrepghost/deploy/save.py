"""The one writer of deployed artefacts: ``*_deploy.pth`` and the config that builds it."""
import os.path as osp
from collections.abc import Mapping
from typing import Tuple

from mmengine.config import Config
from torch import nn

from ..utils import save_checkpoint_atomic
from .dataset_meta import plain
from .deploy_config import write_deploy_config
from .reparameterize import in_train_structure


def save_deployed(model: nn.Module, cfg: Config, checkpoint_path: str, meta: Mapping,
                  overwrite: bool = False) -> Tuple[str, str]:
    """Write the weights of the deployed ``model`` and the deploy config of ``cfg``.

    ``checkpoint_path`` (``.pth``) holds ``dict(meta=..., state_dict=...)`` with
    ``meta['deploy'] = True``; the config goes beside it with the suffix ``.py``
    (:func:`~mmrepghost.deploy.deploy_config.write_deploy_config`). Both are written atomically.
    ``meta['dataset_meta']`` must hold the class names (``classes``): mmdet's and mmpretrain's
    inferencers read them from the checkpoint. Returns the two paths.

    Raises:
        ValueError: a path that is not ``.pth``, a model still in the train structure, or a
            ``dataset_meta`` that is not a dict with ``classes``.
        FileExistsError: an output exists and ``overwrite`` is False.
    """
    if not checkpoint_path.endswith('.pth'):
        raise ValueError(f'a deploy checkpoint is a .pth file, got {checkpoint_path!r}')
    left = in_train_structure(model)  # any model may be passed: checked, not assumed
    if left:
        raise ValueError(f'{left} are in the train structure; re-parameterize the model '
                         '(mmrepghost.deploy.reparameterize_model) before saving it deployed')
    dataset_meta = meta.get('dataset_meta')
    if not isinstance(dataset_meta, Mapping) or not dataset_meta.get('classes'):
        raise ValueError(f'meta["dataset_meta"] must be a dict with the class names '
                         f'("classes"), got {dataset_meta!r}')
    config_path = osp.splitext(checkpoint_path)[0] + '.py'
    for path in (checkpoint_path, config_path):
        if osp.exists(path) and not overwrite:
            raise FileExistsError(f'{path} exists; pass overwrite=True to replace it')
    checkpoint = dict(meta=plain(dict(meta, deploy=True)), state_dict=model.state_dict())
    save_checkpoint_atomic(checkpoint, checkpoint_path, overwrite=overwrite)
    write_deploy_config(cfg, config_path, overwrite=overwrite)
    return checkpoint_path, config_path
