"""Build the model of a config and fill it from a checkpoint, train or deploy structure."""
from typing import NamedTuple

from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from ..utils import load_checkpoint_file
from ..utils.deploy_config import deploy_config


class CheckpointMismatchError(ValueError):
    """The checkpoint fits neither the train nor the deploy structure of the config."""


class LoadedModel(NamedTuple):
    model: nn.Module
    cfg: Config  # the training config (init_cfg of the backbone removed)
    meta: dict
    is_deploy: bool  # the checkpoint (and model) are in the fused deploy structure


def build_model(cfg: Config) -> nn.Module:
    """``MODELS.build(cfg.model)`` in the config's scope (mmdet or mmpretrain)."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmengine.registry import MODELS
    return MODELS.build(cfg.model)


def _state_dict_of(checkpoint, path: str) -> dict:
    state_dict = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise CheckpointMismatchError(f'{path} holds no state_dict')
    return state_dict


def load_trained_model(config: str, checkpoint: str) -> LoadedModel:
    """The model of ``config`` (eval mode) with the weights of ``checkpoint``.

    A train-structure checkpoint gives the train-structure model; a deploy checkpoint (from
    ``tools/reparameterize.py`` or ``RepGhostDeployHook(save_deploy=True)``) the deploy one.

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
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        if not missing and not unexpected:
            return LoadedModel(model.eval(), cfg, meta, is_deploy)
        if not report:
            report = (f'{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} '
                      f'unexpected (e.g. {unexpected[:3]})')
    raise CheckpointMismatchError(
        f'{checkpoint} fits neither the train nor the deploy structure of {config}: {report}')
