"""Accuracy of an exported file: the config's test set and evaluator around a runtime session.

The model evaluated is ``mmrepghost_runtime`` (its own image reading, preprocessing, backend
session and postprocessing: what a deployment runs); mmdet/mmpretrain only list the test
images with their annotations and compute the config's metrics (CocoMetric, Accuracy, ...),
so the numbers compare with ``mim test`` of the checkpoint the file came from.
"""
from typing import Callable, Dict, List, Optional

import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import DATASETS, init_default_scope


def _check_classes(dataset_classes, model_classes, model_path: str) -> None:
    dataset_classes, model_classes = list(dataset_classes or ()), list(model_classes)
    if dataset_classes == model_classes:
        return
    if len(dataset_classes) != len(model_classes):
        detail = f'{len(dataset_classes)} classes in the config vs {len(model_classes)}'
    else:
        index = next(i for i, (a, b) in enumerate(zip(dataset_classes, model_classes))
                     if a != b)
        detail = (f'class {index} is {dataset_classes[index]!r} in the config vs '
                  f'{model_classes[index]!r}')
    raise ValueError(f"the config's test set has other classes than {model_path}: {detail} "
                     'in the model (its sidecar); evaluate it with the config it was trained '
                     'with')


def _sample(info: dict, image_shape, prediction, task: str) -> dict:
    if task == 'classification':
        return dict(pred_score=torch.from_numpy(prediction.scores),
                    gt_label=torch.as_tensor([int(info['gt_label'])]))
    instances = dict(bboxes=torch.from_numpy(prediction.bboxes),
                     scores=torch.from_numpy(prediction.scores),
                     labels=torch.from_numpy(prediction.labels))
    if prediction.masks is not None:
        instances['masks'] = torch.from_numpy(prediction.masks)
    return dict(img_id=info['img_id'], ori_shape=tuple(image_shape[:2]),
                instances=info.get('instances', []), pred_instances=instances)


def evaluate_deployed(cfg: Config, model_path: str, backend: str = 'onnxruntime',
                      batch_size: int = 1, threads: Optional[int] = None,
                      progress: Optional[Callable[[int, int], None]] = None
                      ) -> Dict[str, float]:
    """The metrics of ``cfg.test_evaluator`` for the exported ``model_path`` on its test set.

    Images are read from the dataset's files and run ``batch_size`` at a time (padded
    together, as mmdet's data preprocessor pads a batch). ``progress(done, total)`` is called
    after each batch.
    """
    from mmrepghost_runtime import load_model, read_image
    model = load_model(model_path, backend=backend, threads=threads)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    _check_classes(dataset.metainfo.get('classes'), model.sidecar.classes, model_path)
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    total = len(dataset)
    for start in range(0, total, batch_size):
        infos = [dataset.get_data_info(i) for i in range(start, min(start + batch_size, total))]
        images: List = [read_image(info['img_path'])[0] for info in infos]
        predictions = model.predict(images, batch_size=len(images))
        evaluator.process([_sample(info, image.shape, prediction, model.sidecar.task)
                           for info, image, prediction in zip(infos, images, predictions)])
        if progress is not None:
            progress(start + len(infos), total)
    return evaluator.evaluate(total)


def format_metrics(metrics: Dict[str, float], digits: int = 4) -> str:
    """``key: value`` pairs as mmengine's test loop logs them (``coco/bbox_mAP: 0.6600``)."""
    return '  '.join(f'{key}: {value:.{digits}f}' if isinstance(value, float) else
                     f'{key}: {value}' for key, value in metrics.items())
