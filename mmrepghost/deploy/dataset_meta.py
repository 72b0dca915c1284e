"""The ``dataset_meta`` (class names, palette) of a config's dataset, without loading data.

mmdet's ``init_detector``/``DetInferencer`` and mmpretrain's ``get_model``/``init_model``/
``ImageClassificationInferencer`` take the class names from ``checkpoint['meta']
['dataset_meta']``: ``None`` crashes them, a missing key silently gives COCO/ImageNet names.
Every checkpoint mmrepghost writes therefore carries one.
"""
import os.path as osp
import warnings
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config

#: the dataloaders whose dataset :func:`dataset_meta_from_config` reads, in this order (the
#: training set first: mmengine's Runner writes its metainfo into every checkpoint)
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class DatasetMetaWarning(UserWarning):
    """A checkpoint has no ``dataset_meta``; the class names were taken from the config."""


def plain(value: Any) -> Any:
    """``value`` with every mapping a ``dict`` (e.g. no ``ConfigDict``), lists and tuples kept.

    ``torch.load(weights_only=True)`` rebuilds plain containers only.
    """
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value)
    return value


def _dataset_cfg(cfg: Config) -> Mapping:
    """The dataset config of the first dataloader of ``cfg`` that has one (wrappers opened)."""
    for name in DATALOADERS:
        loader = cfg.get(name)
        dataset = loader.get('dataset') if isinstance(loader, Mapping) else None
        # RepeatDataset, ClassBalancedDataset, MultiImageMixDataset: `dataset`;
        # ConcatDataset: `datasets` (its metainfo is the first one's)
        while isinstance(dataset, Mapping) and (isinstance(dataset.get('dataset'), Mapping) or
                                                dataset.get('datasets')):
            inner = dataset.get('dataset')
            dataset = inner if isinstance(inner, Mapping) else dataset['datasets'][0]
        if isinstance(dataset, Mapping) and dataset.get('type') is not None:
            return dataset
    raise ValueError(f'the config has no dataset to take class names from: none of '
                     f'{", ".join(f"{name}.dataset" for name in DATALOADERS)} is set')


def dataset_meta_from_config(cfg: Config) -> dict:
    """The metainfo the dataset of ``cfg`` would have, without reading its annotations.

    The dataset class is looked up in the registry of ``cfg.default_scope`` (mmdet,
    mmpretrain, ...); its ``METAINFO`` is merged with the config's ``metainfo`` (and
    mmpretrain's ``classes=``) as the dataset's ``_load_metainfo`` does. The dataloaders are
    tried in the order of :data:`DATALOADERS`.

    Raises:
        ValueError: the config has no dataloader dataset, its type is not registered, or the
            result names no classes (e.g. a folder dataset that finds them in its data).
    """
    from mmengine.registry import DATASETS
    dataset = _dataset_cfg(cfg)
    dataset_type = dataset['type']
    scope = cfg.get('default_scope')
    if isinstance(dataset_type, type):
        dataset_class = dataset_type
    else:
        with DATASETS.switch_scope_and_registry(scope) as registry:
            dataset_class = registry.get(dataset_type)
    if dataset_class is None or not hasattr(dataset_class, '_load_metainfo'):
        raise ValueError(f'dataset type {dataset_type!r} is not a registered mmengine dataset '
                         f'in scope {scope!r}; expected e.g. CocoDataset (mmdet) or ImageNet '
                         '(mmpretrain)')
    metainfo = dict(plain(dataset.get('metainfo') or {}))
    classes = dataset.get('classes')  # mmpretrain's `classes=` (a file name or names)
    if classes is not None:  # the metainfo's classes win, as in mmpretrain
        metainfo.setdefault('classes', osp.expanduser(classes) if isinstance(classes, str)
                            else classes)
    meta = plain(dataset_class._load_metainfo(metainfo))
    if isinstance(meta.get('classes'), list):
        meta['classes'] = tuple(meta['classes'])
    if not meta.get('classes'):
        raise ValueError(f'the config\'s dataset {dataset_class.__name__} names no classes '
                         '(neither its METAINFO nor the config\'s metainfo/classes); set '
                         'metainfo=dict(classes=(...)) in the dataset config')
    return meta


def checkpoint_dataset_meta(meta: Mapping, cfg: Config, checkpoint: str) -> dict:
    """``meta['dataset_meta']``, or the config's one with a :class:`DatasetMetaWarning`.

    The config's is for checkpoints written before mmrepghost stored class names (key missing,
    ``None``, or without ``classes``); mmdet 2.x / mmcls 0.x checkpoints' ``meta['CLASSES']``
    is read as ``dict(classes=...)``, as mmdet and mmpretrain do.

    Raises:
        ValueError: ``meta['dataset_meta']`` is neither a dict nor None, or the checkpoint
            has no class names and :func:`dataset_meta_from_config` finds none.
    """
    dataset_meta = meta.get('dataset_meta')
    if dataset_meta is not None and not isinstance(dataset_meta, Mapping):
        raise ValueError(f'{checkpoint}: meta["dataset_meta"] must be a dict, got '
                         f'{type(dataset_meta).__name__}')
    if dataset_meta and dataset_meta.get('classes'):
        return plain(dataset_meta)
    if not dataset_meta and meta.get('CLASSES'):
        return dict(classes=tuple(meta['CLASSES']))
    from_config = dataset_meta_from_config(cfg)
    warnings.warn(
        f'{checkpoint} has no dataset_meta with class names (written by an older mmrepghost '
        f'or another tool); using the class names of the config\'s dataset: '
        f'{len(from_config["classes"])} classes {_preview(from_config["classes"])}',
        DatasetMetaWarning, stacklevel=3)
    return from_config


def _preview(classes, limit: int = 5) -> str:
    names = ', '.join(map(repr, classes[:limit]))
    return f'({names}{", ..." if len(classes) > limit else ""})'
