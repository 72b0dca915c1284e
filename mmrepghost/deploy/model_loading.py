"""Build the model of a config and fill it from a checkpoint, train or deploy structure."""
import warnings
from typing import NamedTuple

from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from ..models import check_neck_in_channels
from ..utils import CheckpointError, CheckpointMismatchError, fit_state_dict, load_checkpoint_file
from .dataset_meta import DatasetMetaWarning, checkpoint_dataset_meta
from .deploy_config import deploy_config


class LoadedModel(NamedTuple):
    model: nn.Module
    cfg: Config  # the training config (init_cfg of the backbone removed)
    meta: dict  # the checkpoint's, with dataset_meta (from the config for old checkpoints)
    is_deploy: bool  # the checkpoint (and model) are in the fused deploy structure


def build_model(cfg: Config) -> nn.Module:
    """``MODELS.build(cfg.model)`` in the config's scope (mmdet or mmpretrain).

    Raises:
        ValueError: the neck does not fit a RepGhostNet backbone
            (:func:`~mmrepghost.models.check_neck_in_channels`).
    """
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    check_neck_in_channels(model)
    return model


def _state_dict_of(checkpoint, path: str) -> dict:
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise CheckpointMismatchError(f'{path} holds no state_dict')
    return state_dict


def load_trained_model(config: str, checkpoint: str) -> LoadedModel:
    """The model of ``config`` (eval mode) with the weights of ``checkpoint``.

    A train-structure checkpoint gives the train-structure model; a deploy checkpoint (from
    ``tools/reparameterize.py`` or ``RepGhostDeployHook(save_deploy=True)``) the deploy one.
    ``meta['dataset_meta']`` (also set as ``model.dataset_meta``) is the checkpoint's; for a
    checkpoint without one it is the config's dataset's, with a :class:`DatasetMetaWarning`.

    Raises:
        FileNotFoundError, CheckpointError: the file is missing, empty, corrupted or unsafe.
        CheckpointMismatchError: the weights fit neither structure (another architecture).
    """
    loaded = load_checkpoint_file(checkpoint)
    state_dict = _state_dict_of(loaded, checkpoint)
    meta = dict(loaded.get('meta') or {})
    cfg = Config.fromfile(config)
    if cfg.model.get('backbone') is not None:
        cfg.model.backbone.init_cfg = None  # every weight comes from the checkpoint
    report = ''
    for is_deploy in (bool(meta.get('deploy')), not meta.get('deploy')):
        model = build_model(deploy_config(cfg) if is_deploy else cfg)
        problems = fit_state_dict(model.state_dict(), state_dict).summary()
        if not problems:
            model.load_state_dict(state_dict, strict=True)
            _fill_dataset_meta(model, meta, cfg, checkpoint)
            return LoadedModel(model.eval(), cfg, meta, is_deploy)
        report = report or problems
    raise CheckpointMismatchError(
        f'{checkpoint} fits neither the train nor the deploy structure of {config}: {report}')


def _fill_dataset_meta(model: nn.Module, meta: dict, cfg: Config, checkpoint: str) -> None:
    """Set ``meta['dataset_meta']`` and ``model.dataset_meta`` (see :func:`load_trained_model`).

    A checkpoint without class names whose config names none either (e.g. a model-only
    config) loads with a warning and no ``dataset_meta``.
    """
    try:
        meta['dataset_meta'] = checkpoint_dataset_meta(meta, cfg, checkpoint)
    except ValueError as error:
        meta.pop('dataset_meta', None)
        warnings.warn(f'{checkpoint} has no dataset_meta and none comes from the config: '
                      f'{error}', DatasetMetaWarning, stacklevel=3)
        return
    model.dataset_meta = meta['dataset_meta']


#: What :func:`load_trained_model` raises for a bad checkpoint; tools report these and exit 2.
LOAD_ERRORS = (FileNotFoundError, CheckpointError, CheckpointMismatchError)
