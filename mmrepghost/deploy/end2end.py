"""End-to-end graphs: the preprocessed batch in, finished predictions out (mmdeploy's outputs).

Detectors return ``dets`` (N, K, 5: x1, y1, x2, y2, score in the input's coordinates) and
``labels`` (N, K) int64, K = the config's ``max_per_img``; rows past an image's detections hold
zeros and label -1. Mask R-CNN adds ``masks`` (N, K, M, M): each detection's mask
probabilities for its class, relative to its box. Classifiers return ``probs`` (softmax) or
``logits``. Decoding, score threshold, pre-NMS top-k and class-aware NMS run in the graph with
standard ONNX operators (``TopK``, ``NonMaxSuppression``, ``RoiAlign``), so onnxruntime and
OpenVINO run it without custom ops or PyTorch.

Padding: mmdet clips boxes to each image's resized shape before NMS, which a padded batch
does not tell; the runtime pads with NaN and the graph reads each image's extent from it
(:func:`split_padding`), so batches of differently sized images give mmdet's results. A
zero-padded batch also works (boxes are then clipped to the batch's padded size, as in
mmdeploy's graphs).
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

#: the opset end-to-end graphs are exported with (RoiAlign's half_pixel mode needs 16)
END2END_OPSET = 17


class NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression``: ``boxes`` (N, P, 4), ``scores`` (N, C, P) -> (S, 3) int64.

    Each selected row is (image, class, box); a class keeps at most ``max_per_class`` boxes
    whose score is above ``score_thr``. Eager PyTorch computes the same with torchvision.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou_thr: float,
                score_thr: float) -> Tensor:
        rows = []
        for n in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                candidates = torch.nonzero(scores[n, c] > score_thr).flatten()
                keep = torchvision.ops.nms(boxes[n, candidates], scores[n, c, candidates],
                                           iou_thr)[:max_per_class]
                index = candidates[keep]
                rows.append(torch.stack([torch.full_like(index, n), torch.full_like(index, c),
                                         index], dim=1))
        return torch.cat(rows).to(torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_thr, score_thr):
        def const(value, dtype):
            return g.op('Constant', value_t=torch.tensor([value], dtype=dtype))
        return g.op('NonMaxSuppression', boxes, scores, const(max_per_class, torch.int64),
                    const(iou_thr, torch.float32), const(score_thr, torch.float32))


def batched_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thr: float,
                max_per_img: int) -> Tensor:
    """Class-aware NMS per image, as mmdet's ``batched_nms``: (S, 3) rows (image, 0, box).

    ``boxes`` (N, P, 4), ``scores`` (N, P), ``labels`` (N, P). Candidates with a negative
    score are ignored. Boxes of different classes never overlap after mmdet's offset trick
    (each class shifted by ``label * (largest coordinate + 1)``), so one NMS class suffices.
    """
    offsets = labels.to(boxes.dtype) * (boxes.max() + 1)
    return NonMaxSuppression.apply(boxes + offsets.unsqueeze(-1), scores.unsqueeze(1),
                                   max_per_img, iou_thr, 0.0)


def detections_per_image(boxes: Tensor, scores: Tensor, labels: Tensor, selected: Tensor,
                         max_per_img: int) -> Tuple[Tensor, Tensor, Tensor]:
    """The ``max_per_img`` best selected candidates of each image, padded.

    ``boxes`` (N, P, 4), ``scores``/``labels`` (N, P), ``selected`` (S, 3) from NMS. Returns
    ``dets`` (N, K, 5), ``labels`` (N, K) (-1 where an image has fewer) and the candidate
    index of each row (N, K) for heads that gather more per detection (masks).
    """
    batch = boxes.shape[0]
    image, box = selected[:, 0], selected[:, 2]
    chosen = scores[image, box]
    # (N, S) the selected scores in their own image's row, -1 elsewhere; K columns of -1
    # appended so that TopK(K) exists whatever S is
    own = image.unsqueeze(0) == torch.arange(batch, device=boxes.device).unsqueeze(1)
    ranked = torch.where(own, chosen.unsqueeze(0), torch.full_like(chosen, -1.0).unsqueeze(0))
    ranked = torch.cat([ranked, ranked.new_full((batch, max_per_img), -1.0)], dim=1)
    top_scores, order = ranked.topk(max_per_img, dim=1)
    valid = top_scores > -1
    padded_box = torch.cat([box, box.new_zeros(1)])
    index = padded_box[order.clamp(max=box.shape[0])]  # (N, K) candidate index
    rows = torch.arange(batch, device=boxes.device).unsqueeze(1)
    det_boxes = boxes[rows, index] * valid.unsqueeze(-1)
    dets = torch.cat([det_boxes, (top_scores * valid).unsqueeze(-1)], dim=-1)
    det_labels = torch.where(valid, labels[rows, index], torch.full_like(index, -1))
    return dets, det_labels, index


def split_padding(images: Tensor, pad_value: float = 0.0) -> Tuple[Tensor, Tensor]:
    """Read NaN pixels as padding: ``(images with pad_value there, extents (N, 1, 4))``.

    mmdet clips each image's boxes to its own resized size, which the padded batch alone
    does not tell. So the runtime pads with NaN (the sidecar's ``preprocess.nan_padding``):
    an image's extent is the top-left block of rows and columns holding a non-NaN pixel,
    given as (w, h, w, h). Without NaN (e.g. a zero-padded batch) every image extends over
    the whole input and boxes are clipped to the batch's padded size, as mmdeploy's graphs do.
    """
    padding = torch.isnan(images)
    images = torch.where(padding, torch.full_like(images, pad_value), images)
    inside = (~padding[:, 0]).to(images.dtype)  # (N, H, W)
    height = inside.amax(dim=2).sum(dim=1)
    width = inside.amax(dim=1).sum(dim=1)
    return images, torch.stack([width, height, width, height], dim=1).unsqueeze(1)


def clip_boxes(boxes: Tensor, extents: Tensor) -> Tensor:
    """Clip (N, P, 4) boxes to [0, extent] per image (``extents`` (N, 1, 4) as above)."""
    return torch.max(torch.min(boxes, extents), boxes.new_zeros(1))


def drop_small_boxes(boxes: Tensor, scores: Tensor, min_size: float) -> Tensor:
    """``scores`` with -1 (dropped) where a box is not wider and taller than ``min_size``
    (mmdet's ``min_bbox_size``; < 0: keep all)."""
    if min_size < 0:
        return scores
    wide = (boxes[..., 2] - boxes[..., 0] > min_size) & (boxes[..., 3] - boxes[..., 1] > min_size)
    return torch.where(wide, scores, torch.full_like(scores, -1.0))


def pad_value_of(detector: nn.Module) -> float:
    """The value the detector's data preprocessor pads normalized batches with."""
    return float(getattr(getattr(detector, 'data_preprocessor', None), 'pad_value', 0) or 0)


def top_candidates(scores: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """Top ``k`` of (N, X) per row, padded with -1 so that any X works: (values, indices).

    Padded picks have value -1 and an index clamped into range (callers mask them by value).
    ``k <= 0`` keeps all, sorted (mmdet's ``nms_pre=-1``).
    """
    if k <= 0:
        return scores.sort(dim=1, descending=True)
    padded = torch.cat([scores, scores.new_full((scores.shape[0], k), -1.0)], dim=1)
    values, indices = padded.topk(k, dim=1)
    return values, indices.clamp(max=scores.shape[1] - 1)


class DenseDetector(nn.Module):
    """A one-stage mmdet detector (RetinaNet, FCOS, ATSS, ...) with its decoding and NMS.

    Follows ``BaseDenseHead.predict_by_feat``: per level the ``nms_pre`` best (prior, class)
    scores above ``score_thr``, decoded by the head's ``bbox_coder``; centerness (FCOS, ATSS)
    multiplies the scores before NMS; then class-aware NMS and ``max_per_img``.
    """

    output_names = ('dets', 'labels')

    def __init__(self, detector: nn.Module, test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.detector = detector
        self.head = detector.bbox_head
        cfg = dict(test_cfg if test_cfg is not None else self.head.test_cfg)
        self.score_thr = float(cfg.get('score_thr', 0))
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.iou_thr = float(cfg['nms']['iou_threshold'])
        self.max_per_img = int(cfg['max_per_img'])
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))

    @property
    def baked_test_cfg(self) -> dict:
        """What the graph bakes in (the sidecar's ``postprocess``)."""
        return dict(score_thr=self.score_thr, iou_threshold=self.iou_thr,
                    nms_pre=self.nms_pre, max_per_img=self.max_per_img)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor]:
        images, extents = split_padding(images, pad_value_of(self.detector))
        boxes, scores, labels = self.candidates(self.head(self.detector.extract_feat(images)),
                                                extents)
        selected = batched_nms(boxes, scores, labels, self.iou_thr, self.max_per_img)
        dets, det_labels, _ = detections_per_image(boxes, scores, labels, selected,
                                                   self.max_per_img)
        return dets, det_labels

    def candidates(self, head_outputs, extents: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Decoded boxes (N, P, 4), scores (N, P; -1 = dropped) and labels of all levels,
        boxes clipped to each image's ``extents`` (see :func:`split_padding`)."""
        cls_scores, bbox_preds = head_outputs[:2]
        factors = head_outputs[2] if len(head_outputs) > 2 else [None] * len(cls_scores)
        batch = extents.shape[0]
        all_boxes, all_scores, all_labels = [], [], []
        for level, (cls_score, bbox_pred, factor) in enumerate(
                zip(cls_scores, bbox_preds, factors)):
            priors = self.head.prior_generator.single_level_grid_priors(
                cls_score.shape[-2:], level, dtype=cls_score.dtype, device=cls_score.device)
            classes = self.head.cls_out_channels
            scores = cls_score.permute(0, 2, 3, 1).reshape(batch, -1, classes)
            scores = scores.sigmoid() if self.head.use_sigmoid_cls else \
                scores.softmax(-1)[..., :-1]
            classes = scores.shape[-1]
            deltas = bbox_pred.permute(0, 2, 3, 1).reshape(
                batch, -1, self.head.bbox_coder.encode_size)
            values, flat = top_candidates(scores.reshape(batch, -1), self.nms_pre)
            prior_index = torch.div(flat, classes, rounding_mode='floor')
            labels = flat - prior_index * classes
            keep = values > self.score_thr
            rows = torch.arange(batch, device=extents.device).unsqueeze(1)
            if factor is not None:
                factor = factor.permute(0, 2, 3, 1).reshape(batch, -1).sigmoid()
                values = values * factor[rows, prior_index]
            boxes = self.head.bbox_coder.decode(priors[prior_index], deltas[rows, prior_index])
            all_boxes.append(boxes)
            all_scores.append(torch.where(keep, values, torch.full_like(values, -1.0)))
            all_labels.append(labels)
        boxes = clip_boxes(torch.cat(all_boxes, 1), extents)
        scores = drop_small_boxes(boxes, torch.cat(all_scores, 1), self.min_bbox_size)
        return boxes, scores, torch.cat(all_labels, 1)


class Classifier(nn.Module):
    """An mmpretrain classifier returning ``probs`` (softmax) or ``logits``."""

    def __init__(self, classifier: nn.Module, probs: bool = True) -> None:
        super().__init__()
        self.classifier = classifier
        self.probs = probs
        self.output_names = ('probs', ) if probs else ('logits', )
        self.baked_test_cfg = {}

    def forward(self, images: Tensor) -> Tensor:
        logits = self.classifier(images, mode='tensor')
        return logits.softmax(-1) if self.probs else logits


def end2end_module(model: nn.Module, probs: bool = True) -> nn.Module:
    """The end-to-end wrapper of a deployed mmdet or mmpretrain model (eval mode)."""
    if hasattr(model, 'roi_head') and hasattr(model, 'rpn_head'):
        from .end2end_two_stage import TwoStageDetector
        return TwoStageDetector(model).eval()
    if hasattr(model, 'bbox_head') and hasattr(model, 'extract_feat'):
        head = model.bbox_head
        if not (hasattr(head, 'prior_generator') and hasattr(head, 'bbox_coder')):
            raise TypeError(f'{type(head).__name__} has no prior_generator/bbox_coder; '
                            'end-to-end export supports dense heads that decode priors '
                            '(RetinaNet, FCOS, ATSS, ...) and two-stage detectors')
        return DenseDetector(model).eval()
    if hasattr(model, 'extract_feat') and hasattr(model, 'head'):
        return Classifier(model, probs).eval()
    raise TypeError(f'{type(model).__name__} is neither an mmdet detector nor an mmpretrain '
                    'classifier; end-to-end export needs one of them')


def export_graph(module: nn.Module, path: str, example: Tensor,
                 output_names: Sequence[str]) -> None:
    """``torch.onnx.export`` (TorchScript exporter) with dynamic N, H, W of ``input``."""
    dynamic = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
    dynamic.update({name: {0: 'batch'} for name in output_names})
    with torch.no_grad():
        torch.onnx.export(module, (example, ), path, dynamo=False,
                          opset_version=END2END_OPSET, input_names=['input'],
                          output_names=list(output_names), dynamic_axes=dynamic,
                          do_constant_folding=True)


def run_batch(module: nn.Module, images: Tensor) -> List[Tensor]:
    """Eager outputs of an end-to-end module as a list (the reference for the ONNX file)."""
    with torch.no_grad():
        out = module(images)
    return list(out) if isinstance(out, (tuple, list)) else [out]
