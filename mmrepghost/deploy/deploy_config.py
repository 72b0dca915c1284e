"""The deploy config of a trained config: same model, fused structure, weights from the file."""
import copy

from mmengine.config import Config

from ..utils import atomic_write


def deploy_config(cfg: Config) -> Config:
    """A copy of ``cfg`` whose RepGhostNet backbone is built in deploy mode.

    ``model.backbone.deploy=True`` builds the fused structure, which only a deploy checkpoint
    fills; the backbone's ``init_cfg`` (e.g. ImageNet weights of the training structure) is
    dropped, as the checkpoint provides every weight.
    """
    cfg = copy.deepcopy(cfg)
    backbone = cfg.get('model', {}).get('backbone')
    if not isinstance(backbone, dict) or not str(backbone.get('type')).endswith('RepGhostNet'):
        raise ValueError(f'the config has no RepGhostNet model.backbone to deploy; got '
                         f'{backbone!r}')
    backbone['deploy'] = True
    backbone['init_cfg'] = None
    return cfg


def write_deploy_config(cfg: Config, path: str, overwrite: bool = False) -> None:
    """Write :func:`deploy_config` of ``cfg`` to ``path`` (a ``.py`` file) atomically."""
    if not path.endswith('.py'):
        raise ValueError(f'a deploy config is a .py file, got {path!r}')
    text = deploy_config(cfg).pretty_text
    with atomic_write(path, overwrite) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
