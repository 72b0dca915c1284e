"""A deployed model: the ONNX session and its sidecar, checked to belong together.

::

    model = load_model('model.onnx', backend='onnxruntime', threads=2)
    image, notes = read_image('demo.jpg')
    [result] = model.predict([image])      # Detections or Classification
"""
import os.path as osp
import re
from typing import List, Optional, Sequence, Union

import numpy as np

from .backends import BACKENDS, Session, open_session
from .postprocess import Classification, Detections, classify, rescale_detections
from .preprocess import preprocess
from .sidecar import Sidecar, SidecarError, load_sidecar, sidecar_path

__all__ = ['ModelError', 'DeployedModel', 'load_model', 'check_model', 'EXPORT_HINT']

EXPORT_HINT = 'export it with tools/export_onnx.py --end2end'
#: the names of raw (not end-to-end) graphs: tools/export_onnx.py without --end2end
_RAW_OUTPUT = re.compile(r'(cls_score|bbox_pred|centerness|extra|output)_\d+')
_RAW_INPUT = 'images'
META_EXPORT_ID = 'mmrepghost.export_id'
META_TASK = 'mmrepghost.task'
META_NUM_CLASSES = 'mmrepghost.num_classes'


class ModelError(ValueError):
    """An ONNX file the runtime cannot use as it is, or a sidecar that is not its own."""


def _is_raw(session: Session) -> bool:
    return session.input_name == _RAW_INPUT or any(
        _RAW_OUTPUT.fullmatch(name) for name in session.output_names)


def check_model(session: Session, sidecar: Optional[Sidecar], model_path: str) -> None:
    """Raise :class:`ModelError` unless ``sidecar`` describes the graph of ``session``."""
    if _is_raw(session):
        raise ModelError(
            f'{model_path} is a raw-output ONNX file (input {session.input_name!r}, outputs '
            f'{", ".join(session.output_names)}): the runtime needs an end-to-end graph '
            f'(input "input", outputs dets/labels[/masks] or probs/logits); {EXPORT_HINT}')
    if sidecar is None:
        raise ModelError(f'{model_path} has no sidecar {sidecar_path(model_path)}; '
                         f'{EXPORT_HINT}, which writes both')
    side = sidecar_path(model_path)
    if session.input_name != sidecar.input:
        raise ModelError(f'{side} does not belong to {model_path}: the sidecar names the input '
                         f'{sidecar.input!r}, the model {session.input_name!r}')
    if set(session.output_names) != set(sidecar.outputs):
        missing = [n for n in sidecar.outputs if n not in session.output_names]
        extra = [n for n in session.output_names if n not in sidecar.outputs]
        raise ModelError(
            f'{side} does not belong to {model_path}: the sidecar lists outputs '
            f'{list(sidecar.outputs)}, the model has {list(session.output_names)} '
            f'(missing in the model: {missing or "none"}; not in the sidecar: '
            f'{extra or "none"})')
    meta = session.metadata
    if META_EXPORT_ID not in meta:
        raise ModelError(f'{model_path} carries no {META_EXPORT_ID} metadata, so its sidecar '
                         f'cannot be matched to it; {EXPORT_HINT}')
    checks = ((META_TASK, sidecar.task), (META_NUM_CLASSES, str(sidecar.num_classes)),
              (META_EXPORT_ID, sidecar.export_id))
    for key, expected in checks:
        if key in meta and meta[key] != expected:
            raise ModelError(f'{side} does not belong to {model_path}: {key} is '
                             f'{meta[key]!r} in the model and {expected!r} in the sidecar '
                             '(a sidecar of another export?)')


class DeployedModel:
    """An end-to-end ONNX model with its sidecar; :meth:`predict` runs images through it."""

    def __init__(self, session: Session, sidecar: Sidecar, model_path: str) -> None:
        check_model(session, sidecar, model_path)
        self.session = session
        self.sidecar = sidecar
        self.model_path = model_path

    @property
    def task(self) -> str:
        return self.sidecar.task

    @property
    def classes(self):
        return self.sidecar.classes

    def run_batch(self, images: Sequence[np.ndarray]):
        """Preprocess ``images`` as one batch and run it: ``(outputs dict, metas)``."""
        batch, metas = preprocess(images, self.sidecar.preprocess)
        return self.session.run(batch), metas

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 1,
                score_thr: Optional[float] = None, topk: int = 5
                ) -> List[Union[Detections, Classification]]:
        """Results for BGR uint8 images (as :func:`read_image` gives), ``batch_size`` at a time.

        Detectors: ``score_thr`` drops detections below it (the graph already applied the
        exported ``postprocess.score_thr``). Classifiers: the ``topk`` best classes.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f'batch_size = {batch_size!r}: expected a positive integer')
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        results: List[Union[Detections, Classification]] = []
        for start in range(0, len(images), batch_size):
            chunk = list(images[start:start + batch_size])
            outputs, metas = self.run_batch(chunk)
            for i, meta in enumerate(metas):
                results.append(self._result(outputs, i, meta, score_thr, topk))
        return results

    def _result(self, outputs, i, meta, score_thr, topk):
        sidecar = self.sidecar
        if sidecar.task == 'classification':
            name = sidecar.outputs[0]
            return classify(outputs[name][i], sidecar.classes, is_logits=name == 'logits',
                            topk=topk)
        masks = outputs['masks'][i] if sidecar.task == 'instance_segmentation' else None
        return rescale_detections(outputs['dets'][i], outputs['labels'][i], meta,
                                  sidecar.classes, masks=masks,
                                  mask_thr=sidecar.mask_thr_binary or 0.5,
                                  score_thr=score_thr)


def load_model(model_path: str, backend: str = 'onnxruntime',
               threads: Optional[int] = None) -> DeployedModel:
    """Open ``model_path`` (an end-to-end ``.onnx``) and its sidecar, checked to match.

    Errors, each with one message: ``ValueError`` (unknown backend), ``ImportError`` (backend
    not installed: names the pip package), ``FileNotFoundError`` (no model file),
    :class:`ModelError` (a raw-output file, no sidecar, a sidecar of another model),
    :class:`~mmrepghost_runtime.sidecar.SidecarError` (an invalid sidecar).
    """
    if backend not in BACKENDS:
        raise ValueError(f'unknown backend {backend!r}; available: {", ".join(BACKENDS)}')
    model_path = str(model_path)
    sidecar_path(model_path)  # the path ends in .onnx
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'{model_path}: no such model file')
    session = open_session(model_path, backend, threads)
    try:
        sidecar = load_sidecar(model_path)
    except SidecarError:
        if _is_raw(session) or not osp.isfile(sidecar_path(model_path)):
            sidecar = None  # check_model says what is wrong with the model itself
        else:
            raise
    return DeployedModel(session, sidecar, model_path)
