"""Graph outputs -> results in original-image coordinates.

Detections: rows with label < 0 (padding) dropped, boxes divided by the resize's
(w_scale, h_scale) and clipped to the original image; instance masks pasted at full image size
like mmdet's ``_do_paste_mask`` (bilinear ``grid_sample``, ``align_corners=False``, zeros
outside the MxM mask) and binarized with ``>= mask_thr_binary``. Classification: softmax of
logits when needed, and the top-k.
"""
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

from .preprocess import ImageMeta

__all__ = ['Detections', 'Classification', 'rescale_detections', 'paste_masks', 'softmax',
           'classify']


@dataclass
class Detections:
    """One image's detections in original-image pixels (x1, y1, x2, y2)."""
    bboxes: np.ndarray  # (K, 4) float32
    scores: np.ndarray  # (K,) float32
    labels: np.ndarray  # (K,) int64
    class_names: Tuple[str, ...]  # (K,) the name of each detection's label
    masks: Optional[np.ndarray] = None  # (K, H, W) bool, instance segmentation only
    image_shape: Tuple[int, int] = (0, 0)  # (H, W) of the original image

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Classification:
    """One image's class probabilities and its top-k (best first)."""
    scores: np.ndarray  # (C,) float32 probabilities
    top_indices: np.ndarray  # (k,) int64
    top_scores: np.ndarray  # (k,) float32
    top_names: Tuple[str, ...]
    classes: Tuple[str, ...] = field(repr=False, default=())

    @property
    def label(self) -> int:
        return int(self.top_indices[0])

    @property
    def name(self) -> str:
        return self.top_names[0]


def rescale_detections(dets: np.ndarray, labels: np.ndarray, meta: ImageMeta,
                       classes: Sequence[str], masks: Optional[np.ndarray] = None,
                       mask_thr: float = 0.5, score_thr: Optional[float] = None) -> Detections:
    """One image's ``dets`` (K, 5) / ``labels`` (K,) [/ ``masks`` (K, M, M)] in input
    coordinates -> :class:`Detections` in the original image (see the module docstring).

    ``score_thr`` additionally drops detections scoring below it.
    """
    dets = np.asarray(dets, np.float32).reshape(-1, 5)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    keep = labels >= 0
    if score_thr is not None:
        keep &= dets[:, 4] >= score_thr
    dets, labels = dets[keep], labels[keep]
    if len(labels) and labels.max() >= len(classes):
        raise ValueError(f'the model returned label {int(labels.max())} but the sidecar lists '
                         f'{len(classes)} classes')
    height, width = meta.ori_shape
    w_scale, h_scale = meta.scale_factor
    offset_x, offset_y = meta.crop_offset
    boxes = dets[:, :4] + np.array([offset_x, offset_y, offset_x, offset_y], np.float32)
    boxes = boxes / np.array([w_scale, h_scale, w_scale, h_scale], np.float32)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    pasted = None
    if masks is not None:
        pasted = paste_masks(np.asarray(masks)[keep], boxes, height, width, mask_thr)
    return Detections(bboxes=boxes.astype(np.float32), scores=dets[:, 4].copy(),
                      labels=labels, class_names=tuple(classes[i] for i in labels),
                      masks=pasted, image_shape=(height, width))


def _sample_matrix(start: int, stop: int, low: np.float32, high: np.float32,
                   size: int) -> np.ndarray:
    """(stop - start, size) weights of ``grid_sample`` (bilinear, zeros padding,
    ``align_corners=False``) of pixel centers ``start..stop-1`` over the span [low, high]."""
    centers = np.arange(start, stop, dtype=np.float32) + np.float32(0.5)
    with np.errstate(divide='ignore', invalid='ignore'):
        grid = (centers - low) / (high - low) * np.float32(2) - np.float32(1)
    grid[~np.isfinite(grid)] = 0  # mmdet sets inf (empty box) to 0
    coords = ((grid + np.float32(1)) * np.float32(size) - np.float32(1)) / np.float32(2)
    floor = np.floor(coords)
    frac = (coords - floor).astype(np.float64)
    floor = floor.astype(np.int64)
    weights = np.zeros((len(coords), size), np.float64)
    rows = np.arange(len(coords))
    for index, weight in ((floor, 1 - frac), (floor + 1, frac)):
        valid = (index >= 0) & (index < size)
        weights[rows[valid], index[valid]] += weight[valid]
    return weights


def paste_masks(masks: np.ndarray, boxes: np.ndarray, height: int, width: int,
                threshold: float = 0.5) -> np.ndarray:
    """mmdet's ``_do_paste_mask`` + ``>= threshold``: (K, M, M) probabilities over (K, 4) boxes
    in image pixels -> bool (K, height, width); computed only inside each box (+1 pixel)."""
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = np.zeros((len(boxes), height, width), bool)
    if masks.ndim != 3 or len(masks) != len(boxes):
        raise ValueError(f'masks of shape {masks.shape} do not fit {len(boxes)} boxes')
    for k, (mask, (x0, y0, x1, y1)) in enumerate(zip(masks, boxes)):
        # mmdet's skip_empty region: floor(min) - 1 .. ceil(max) + 1, inside the image
        xa, ya = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
        xb, yb = min(int(np.ceil(x1)) + 1, width), min(int(np.ceil(y1)) + 1, height)
        if xb <= xa or yb <= ya:
            continue
        wy = _sample_matrix(ya, yb, y0, y1, mask.shape[0])
        wx = _sample_matrix(xa, xb, x0, x1, mask.shape[1])
        out[k, ya:yb, xa:xb] = (wy @ mask.astype(np.float64) @ wx.T) >= threshold
    return out


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (float64 inside, float32 out)."""
    x = np.asarray(logits, np.float64)
    x = np.exp(x - x.max(axis=axis, keepdims=True))
    return (x / x.sum(axis=axis, keepdims=True)).astype(np.float32)


def classify(output: np.ndarray, classes: Sequence[str], is_logits: bool = False,
             topk: int = 5) -> Classification:
    """One image's ``probs`` (or ``logits``) (C,) -> :class:`Classification` with the top-k."""
    scores = np.asarray(output, np.float32).reshape(-1)
    if len(scores) != len(classes):
        raise ValueError(f'the model returned {len(scores)} class scores but the sidecar lists '
                         f'{len(classes)} classes')
    if is_logits:
        scores = softmax(scores)
    k = min(topk, len(scores))
    order = np.argsort(-scores, kind='stable')[:k].astype(np.int64)
    return Classification(scores=scores, top_indices=order, top_scores=scores[order],
                          top_names=tuple(classes[i] for i in order), classes=tuple(classes))
