"""Drawing results with OpenCV: boxes, ``class score`` labels, translucent masks, top-5 text."""
from typing import Tuple, Union

import cv2
import numpy as np

from .postprocess import Classification, Detections

__all__ = ['class_color', 'draw_detections', 'draw_classification', 'draw_result']

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(label: int) -> Tuple[int, int, int]:
    """A fixed, well separated BGR color per class index (golden-ratio hues)."""
    hue = int((label * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 200, 255]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _text(image: np.ndarray, text: str, x: int, y: int, color, scale: float) -> None:
    """``text`` on a filled box whose top-left corner is (x, y), kept inside the image."""
    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thickness)
    height, width = image.shape[:2]
    x = int(min(max(x, 0), max(width - tw - 2, 0)))
    y = int(min(max(y, 0), max(height - th - base - 2, 0)))
    cv2.rectangle(image, (x, y), (x + tw + 2, y + th + base + 2), color, -1)
    luma = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luma > 128 else (255, 255, 255)
    cv2.putText(image, text, (x + 1, y + th + 1), _FONT, scale, ink, thickness, cv2.LINE_AA)


def _scale(image: np.ndarray) -> float:
    return max(0.35, min(image.shape[:2]) / 800)


def draw_detections(image: np.ndarray, result: Detections, alpha: float = 0.45) -> np.ndarray:
    """A copy of the BGR ``image`` with ``result``'s masks, boxes and ``class score`` labels."""
    canvas = image.copy()
    if result.masks is not None and len(result):
        overlay = canvas.astype(np.float32)
        for mask, label in zip(result.masks, result.labels):
            color = np.array(class_color(int(label)), np.float32)
            overlay[mask] = overlay[mask] * (1 - alpha) + color * alpha
        canvas = overlay.round().astype(np.uint8)
    scale = _scale(canvas)
    thickness = max(1, int(round(scale * 2)))
    for box, score, label, name in zip(result.bboxes, result.scores, result.labels,
                                       result.class_names):
        color = class_color(int(label))
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)
        _text(canvas, f'{name} {score:.2f}', x1, y1, color, scale * 0.6)
    return canvas


def draw_classification(image: np.ndarray, result: Classification, k: int = 5) -> np.ndarray:
    """A copy of the BGR ``image`` with the top-``k`` classes and probabilities at the top left."""
    canvas = image.copy()
    scale = _scale(canvas) * 0.6
    y = 2
    for index, name, score in list(zip(result.top_indices, result.top_names,
                                       result.top_scores))[:k]:
        text = f'{name} {score:.3f}'
        _text(canvas, text, 2, y, class_color(int(index)), scale)
        (_, th), base = cv2.getTextSize(text, _FONT, scale, max(1, int(round(scale * 2))))
        y += th + base + 4
    return canvas


def draw_result(image: np.ndarray, result: Union[Detections, Classification]) -> np.ndarray:
    """:func:`draw_detections` or :func:`draw_classification`, whichever fits ``result``."""
    if isinstance(result, Detections):
        return draw_detections(image, result)
    return draw_classification(image, result)
