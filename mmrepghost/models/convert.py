"""Map official RepGhost and timm ``repghostnet_*`` weights onto mmrepghost layouts.

Both sources use the same module names as :class:`~mmrepghost.models.RepGhostNet`
(``conv_stem``, ``bn1``, ``blocks.*``) plus a head ``conv_head`` (1x1 conv 960->1280) and
``classifier`` (FC). They differ in the container: the official training script (timm's
``train.py``) saves ``{'state_dict', 'state_dict_ema', ...}`` and may keep DDP's ``module.``
prefix; a timm model gives a bare state dict. mmrepghost's layouts:

* ``classifier``: ``backbone.*`` + mmpretrain ``StackedLinearClsHead`` keys
  (``head.layers.0.fc`` = conv_head as a linear layer, ``head.layers.1.fc`` = classifier),
  i.e. the ``ImageClassifier`` of ``configs/cls``;
* ``backbone``: the backbone keys alone, without prefix, for ``init_cfg=dict(
  type='Pretrained', checkpoint=...)`` in detectors.

Both layouts carry ``meta['dataset_meta']`` with the 1000 ImageNet class names (mmpretrain's
``IMAGENET_CATEGORIES``) when the classifier has 1000 outputs: mmpretrain's ``get_model`` and
inferencers read the class names from there.
"""
import argparse
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from ..utils import fit_state_dict
from .backbones import ARCH_WIDTHS, RepGhostNet

SOURCES = ('official', 'timm')
#: Extra globals that official/timm training checkpoints pickle: timm's ``train.py`` stores its
#: command line as ``args`` (an ``argparse.Namespace``, a plain attribute container).
SOURCE_SAFE_GLOBALS = (argparse.Namespace, )
LAYOUTS = ('classifier', 'backbone')
WEIGHT_CHOICES = ('auto', 'ema', 'model')
HEAD_KEYS = {
    'conv_head.weight': 'head.layers.0.fc.weight',
    'conv_head.bias': 'head.layers.0.fc.bias',
    'classifier.weight': 'head.layers.1.fc.weight',
    'classifier.bias': 'head.layers.1.fc.bias',
}


class ConversionError(KeyError):
    """The source checkpoint does not fit RepGhostNet (unknown, missing or misshapen keys)."""

    def __init__(self, message: str, num_problems: int = 0):
        super().__init__(message)
        self.num_problems = num_problems

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def extract_state_dict(checkpoint: Mapping, source: str, weights: str = 'auto'
                       ) -> Tuple[Dict[str, Tensor], str]:
    """The raw state dict inside an official/timm checkpoint, and which entry it came from.

    ``weights='auto'`` takes the EMA weights when present (the paper reports EMA accuracy),
    ``'ema'`` requires them, ``'model'`` takes the plain weights.
    """
    if source not in SOURCES:
        raise ValueError(f'source={source!r} is unknown; allowed: {SOURCES}')
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f'weights={weights!r} is unknown; allowed: {WEIGHT_CHOICES}')
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f'expected a dict checkpoint, got {type(checkpoint).__name__}')
    has_ema = 'state_dict_ema' in checkpoint
    if weights == 'ema' and not has_ema:
        raise ConversionError('weights="ema" but the checkpoint has no "state_dict_ema"; '
                              f'its top-level keys are {sorted(checkpoint)[:10]}')
    if has_ema and weights != 'model':
        entry = 'state_dict_ema'
    else:
        entry = next((k for k in ('state_dict', 'model') if k in checkpoint), None)
    state = checkpoint[entry] if entry else checkpoint
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise ConversionError('the checkpoint holds no state dict of tensors (looked for '
                              '"state_dict_ema", "state_dict", "model" and a bare state dict)')
    state = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                        for k, v in state.items())
    return state, entry or '<bare state dict>'


def convert_state_dict(state: Mapping[str, Tensor], expected: Mapping[str, Tensor],
                       layout: str = 'classifier') -> 'OrderedDict[str, Tensor]':
    """Rename an official/timm state dict to ``layout`` and check it against ``expected``.

    Args:
        state: source weights (official/timm names, no ``module.`` prefix).
        expected: the state dict of the target model in ``layout`` (names and shapes).
        layout: ``'classifier'`` or ``'backbone'``.

    Raises:
        ConversionError: listing every unknown key, missing key and shape mismatch.
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout={layout!r} is unknown; allowed: {LAYOUTS}')
    converted, source_key = OrderedDict(), {}
    for key, value in state.items():
        new_key = _rename(key, layout)
        if new_key is None:
            continue
        if new_key == 'head.layers.0.fc.weight':
            value = value.reshape(value.shape[0], -1)  # 1x1 conv on a 1x1 map == linear
        converted[new_key], source_key[new_key] = value, key
    # num_batches_tracked is bookkeeping, not a weight: some exports drop it.
    fit = fit_state_dict(expected, converted,
                         allow_missing=lambda key: key.endswith('num_batches_tracked'))
    unknown = [source_key[key] for key in fit.unexpected]
    missing = fit.missing
    mismatched = [f'{key}: {got} vs expected {want}' for key, got, want in fit.misshapen]
    if not fit.fits:
        raise ConversionError(
            'the checkpoint does not match RepGhostNet '
            f'({len(unknown)} unknown, {len(missing)} missing, {len(mismatched)} misshapen '
            f'keys); is it a RepGhostNet checkpoint of this width?\n' +
            _listing('unknown keys', unknown) + _listing('missing keys', missing) +
            _listing('shape mismatches', mismatched),
            num_problems=len(unknown) + len(missing) + len(mismatched))
    return OrderedDict((key, converted[key] if key in converted else torch.zeros_like(value))
                       for key, value in expected.items())


def _rename(key: str, layout: str) -> Optional[str]:
    if key in HEAD_KEYS:
        return HEAD_KEYS[key] if layout == 'classifier' else None
    return 'backbone.' + key if layout == 'classifier' else key


def _listing(title: str, items: List[str], limit: int = 20) -> str:
    if not items:
        return ''
    more = f'\n    ... and {len(items) - limit} more' if len(items) > limit else ''
    return f'  {title}:\n    ' + '\n    '.join(items[:limit]) + more + '\n'


def expected_state_dict(arch: str, layout: str, num_classes: int = 1000
                        ) -> 'OrderedDict[str, Tensor]':
    """Names and shapes of mmrepghost's ``layout`` for width ``arch`` (random values)."""
    from mmpretrain.models.heads import StackedLinearClsHead
    backbone = RepGhostNet(arch=arch, out_indices=(4, ), init_cfg=None)
    if layout == 'backbone':
        return backbone.state_dict()
    head = StackedLinearClsHead(num_classes, backbone.out_channels[-1], [1280])
    state = OrderedDict(('backbone.' + k, v) for k, v in backbone.state_dict().items())
    state.update(('head.' + k, v) for k, v in head.state_dict().items())
    return state


def imagenet_dataset_meta() -> dict:
    """``dataset_meta`` of ImageNet-1k: mmpretrain's 1000 class names, in label order."""
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    return dict(classes=tuple(IMAGENET_CATEGORIES))


def convert_checkpoint(checkpoint: Mapping, source: str, layout: str = 'classifier',
                       arch: str = 'auto', weights: str = 'auto'
                       ) -> Tuple['OrderedDict[str, Tensor]', dict]:
    """Convert a loaded official/timm checkpoint; returns ``(state_dict, meta)``.

    ``arch='auto'`` finds the width whose names and shapes fit the checkpoint exactly.
    ``meta['dataset_meta']`` holds the ImageNet class names for a 1000-class classifier; other
    class counts have no known names and no ``dataset_meta``.
    """
    state, entry = extract_state_dict(checkpoint, source, weights)
    classifier = state.get('classifier.weight')
    num_classes = classifier.shape[0] if classifier is not None else 1000
    if arch != 'auto' and arch not in ARCH_WIDTHS:
        raise ValueError(f'arch={arch!r} is unknown; allowed: auto, {", ".join(ARCH_WIDTHS)}')
    errors = {}
    for candidate in (ARCH_WIDTHS if arch == 'auto' else [arch]):
        try:
            converted = convert_state_dict(
                state, expected_state_dict(candidate, layout, num_classes), layout)
        except ConversionError as error:
            errors[candidate] = error
            continue
        meta = dict(arch=candidate, source=source, layout=layout, weights=entry,
                    num_classes=num_classes)
        if num_classes == 1000:
            meta['dataset_meta'] = imagenet_dataset_meta()
        return converted, meta
    closest = min(errors, key=lambda a: errors[a].num_problems)
    raise ConversionError(f'no RepGhostNet width fits this checkpoint (tried: '
                          f'{", ".join(errors)}); closest is {closest}: {errors[closest]}')
