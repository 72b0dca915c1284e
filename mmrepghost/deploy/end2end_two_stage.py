"""End-to-end graph of a two-stage mmdet detector (Faster R-CNN, Mask R-CNN).

The stages follow mmdet 3.3's ``TwoStageDetector.predict`` with the building blocks of
:mod:`.end2end` (the outputs and their padding are described there):

1. RPN (``RPNHead._predict_by_feat_single`` + ``_bbox_post_process``): per level the
   ``nms_pre`` best sigmoid scores, decoded and clipped, boxes not wider and taller than
   ``min_bbox_size`` dropped, NMS with the level as the class, the ``max_per_img`` best
   proposals per image (fewer where NMS keeps fewer; the rest are padding and never detect).
2. RoI features (``SingleRoIExtractor``): each proposal goes to the level of
   ``map_roi_levels`` (``finest_scale``); ``RoiAlign`` runs per level on that level's
   proposals only (``NonZero`` + ``Gather``), and one ``Gather`` through the inverse
   permutation puts the results back into proposal order. torchvision's ``roi_align``
   exports to ONNX ``RoiAlign`` (opset 16, ``half_pixel`` for mmcv's ``aligned=True``) and
   computes what mmcv's ``RoIAlign`` does.
3. Box head (``BBoxHead._predict_by_feat_single`` + ``multiclass_nms``): softmax, per-class
   deltas decoded on the proposals and clipped, every (proposal, class) pair above
   ``score_thr`` a candidate, class-aware NMS, ``max_per_img`` per image.
4. Mask head (``StandardRoIHead.predict_mask``): ``FCNMaskHead`` on the final boxes; the
   sigmoid of each detection's own class channel, relative to its box (M x M); the runtime
   pastes it into the image as mmdet's ``_do_paste_mask`` does.

Proposals and boxes are clipped to each image's extent, read from NaN padding as in
:mod:`.end2end` (with a zero-padded batch, to the batch's size: that then also shapes the
proposals, hence the RoI features). A level is chosen by comparing the RoI scale with powers
of two (the same levels as mmdet's ``floor(log2(...))``, without a runtime's logarithm rounding
at the boundaries); detections whose scores differ by less than float rounding may come in
the other order. Supported: ``RPNHead`` + ``StandardRoIHead`` with ``SingleRoIExtractor``
(mmcv ``RoIAlign``, average pooling), a softmax box head with ``DeltaXYWHBBoxCoder``, plain
``nms``; anything else raises when the module is built.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torchvision
from torch import Tensor, nn

from .end2end import (batched_nms, clip_boxes, detections_per_image, drop_small_boxes,
                      pad_value_of, split_padding, top_candidates)


def _nms_iou(stage_cfg: dict, stage: str) -> float:
    nms = stage_cfg['nms']
    if nms.get('type', 'nms') != 'nms':
        raise ValueError(f"{stage}.nms.type={nms['type']!r}: end-to-end export supports "
                         "plain 'nms' only")
    return float(nms['iou_threshold'])


def _roi_layer_settings(extractor: nn.Module) -> List[dict]:
    """The torchvision ``roi_align`` arguments of each layer of an mmcv ``RoIAlign`` extractor."""
    settings = []
    for layer in extractor.roi_layers:
        if type(layer).__name__ != 'RoIAlign' or getattr(layer, 'pool_mode', 'avg') != 'avg':
            raise TypeError(f'{type(layer).__name__} (pool_mode '
                            f"{getattr(layer, 'pool_mode', None)!r}): end-to-end export "
                            "supports mmcv's RoIAlign with pool_mode='avg'")
        settings.append(dict(output_size=tuple(layer.output_size),
                             spatial_scale=float(layer.spatial_scale),
                             sampling_ratio=int(layer.sampling_ratio),
                             aligned=bool(layer.aligned)))
    return settings


def _check_supported(detector: nn.Module) -> None:
    """``TypeError`` unless the detector's heads are what :class:`TwoStageDetector` reproduces."""
    from mmdet.models.dense_heads import RPNHead
    from mmdet.models.roi_heads import SingleRoIExtractor, StandardRoIHead
    if type(detector.rpn_head) is not RPNHead:
        raise TypeError(f'{type(detector.rpn_head).__name__}: end-to-end export supports '
                        'RPNHead proposals')
    roi_head = detector.roi_head
    if type(roi_head) is not StandardRoIHead:
        raise TypeError(f'{type(roi_head).__name__}: end-to-end export supports '
                        'StandardRoIHead (Faster/Mask R-CNN), not cascades or other RoI heads')
    extractors = [roi_head.bbox_roi_extractor]
    if roi_head.with_mask and not roi_head.share_roi_extractor:
        extractors.append(roi_head.mask_roi_extractor)
    for extractor in extractors:
        if type(extractor) is not SingleRoIExtractor:
            raise TypeError(f'{type(extractor).__name__}: end-to-end export supports '
                            'SingleRoIExtractor')
    bbox_head = roi_head.bbox_head
    if bbox_head.custom_cls_channels or not bbox_head.with_reg or \
            type(bbox_head.bbox_coder).__name__ != 'DeltaXYWHBBoxCoder':
        raise TypeError('end-to-end export supports box heads with softmax scores and '
                        'DeltaXYWHBBoxCoder box regression (Faster/Mask R-CNN)')


def roi_levels(rois: Tensor, finest_scale: float, num_levels: int) -> Tensor:
    """``SingleRoIExtractor.map_roi_levels`` of (R, 5) rois: (R,) int64 level indices.

    ``floor(log2(scale / finest_scale + 1e-6))`` clamped to the levels, computed as the count
    of powers ``2 ** k`` (k = 1 .. levels - 1) that the ratio reaches.
    """
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    ratio = scale / finest_scale + 1e-6
    level = torch.zeros_like(ratio, dtype=torch.int64)
    for k in range(1, num_levels):
        level = level + (ratio >= 2.0 ** k).to(torch.int64)
    return level


def extract_roi_features(extractor: nn.Module, settings: Sequence[dict],
                         feats: Sequence[Tensor], rois: Tensor) -> Tensor:
    """``SingleRoIExtractor.forward``: (R, C, S, S) features of (R, 5) rois.

    Each level's ``RoiAlign`` sees only the rois mapped to it (possibly none); the levels'
    results, concatenated, are put back in roi order by one ``Gather`` through the inverse of
    the level-sorted order (a ``ScatterND`` of R indices, not of R feature blocks).
    """
    feats = feats[:extractor.num_inputs]
    if len(feats) == 1:
        return torchvision.ops.roi_align(feats[0], rois, **settings[0])
    levels = roi_levels(rois, extractor.finest_scale, len(feats))
    parts, order = [], []
    for level, (feat, setting) in enumerate(zip(feats, settings)):
        index = torch.nonzero(levels == level).squeeze(1)
        parts.append(torchvision.ops.roi_align(feat, rois[index], **setting))
        order.append(index)
    order = torch.cat(order)  # the roi of each row of the concatenated parts
    position = torch.zeros_like(order).index_put(
        (order, ), torch.arange(order.shape[0], device=rois.device))
    return torch.cat(parts)[position]


class TwoStageDetector(nn.Module):
    """An mmdet two-stage detector (RPN + ``StandardRoIHead``) with its decoding and NMS.

    ``test_cfg``: ``dict(rpn=..., rcnn=...)`` as in mmdet configs; None takes the detector's.
    ``forward(images)`` returns :attr:`output_names`: ``dets`` (N, K, 5), ``labels`` (N, K)
    and, with a mask head, ``masks`` (N, K, M, M); K = ``rcnn.max_per_img``.
    """

    def __init__(self, detector: nn.Module, test_cfg: Optional[dict] = None) -> None:
        super().__init__()
        self.detector = detector
        self.rpn_head = detector.rpn_head
        self.roi_head = detector.roi_head
        cfg = test_cfg if test_cfg is not None else detector.test_cfg
        rpn, rcnn = dict(cfg['rpn']), dict(cfg['rcnn'])
        self.rpn_nms_pre = int(rpn.get('nms_pre', -1))
        self.rpn_iou_thr = _nms_iou(rpn, 'rpn')
        self.rpn_max_per_img = int(rpn['max_per_img'])
        self.min_bbox_size = float(rpn.get('min_bbox_size', -1))
        self.score_thr = float(rcnn.get('score_thr', 0))
        self.iou_thr = _nms_iou(rcnn, 'rcnn')
        self.max_per_img = int(rcnn['max_per_img'])
        self.mask_thr_binary = float(rcnn.get('mask_thr_binary', 0.5))

        _check_supported(detector)
        self.bbox_settings = _roi_layer_settings(self.roi_head.bbox_roi_extractor)
        self.with_mask = bool(self.roi_head.with_mask)
        if self.with_mask:
            self.mask_extractor = (self.roi_head.bbox_roi_extractor
                                   if self.roi_head.share_roi_extractor
                                   else self.roi_head.mask_roi_extractor)
            self.mask_settings = _roi_layer_settings(self.mask_extractor)
        self.output_names = ('dets', 'labels', 'masks') if self.with_mask else ('dets', 'labels')

    @property
    def baked_test_cfg(self) -> dict:
        """The final stage's settings baked into the graph (the sidecar's ``postprocess``), and
        the threshold a runtime binarizes the pasted masks with."""
        cfg = dict(score_thr=self.score_thr, iou_threshold=self.iou_thr,
                   max_per_img=self.max_per_img)
        if self.with_mask:
            cfg['mask_thr_binary'] = self.mask_thr_binary
        return cfg

    def forward(self, images: Tensor) -> Tuple[Tensor, ...]:
        images, extents = split_padding(images, pad_value_of(self.detector))
        feats = self.detector.extract_feat(images)
        proposals, valid = self.proposals(feats, extents)
        boxes, scores, labels = self.candidates(feats, proposals, valid, extents)
        selected = batched_nms(boxes, scores, labels, self.iou_thr, self.max_per_img)
        dets, det_labels, _ = detections_per_image(boxes, scores, labels, selected,
                                                   self.max_per_img)
        if not self.with_mask:
            return dets, det_labels
        return dets, det_labels, self.masks(feats, dets[..., :4], det_labels)

    def proposals(self, feats: Sequence[Tensor], extents: Tensor) -> Tuple[Tensor, Tensor]:
        """RPN proposals (N, P, 4), P = ``rpn.max_per_img``, best first, and their validity."""
        head = self.rpn_head
        cls_scores, bbox_preds = head(feats)
        batch = extents.shape[0]
        rows = torch.arange(batch, device=extents.device).unsqueeze(1)
        all_boxes, all_scores, all_levels = [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            priors = head.prior_generator.single_level_grid_priors(
                cls_score.shape[-2:], level, dtype=cls_score.dtype, device=cls_score.device)
            scores = cls_score.permute(0, 2, 3, 1).reshape(batch, -1, head.cls_out_channels)
            # one foreground score per prior (softmax RPNs: the first of two channels)
            scores = (scores.sigmoid() if head.use_sigmoid_cls else scores.softmax(-1))[..., 0]
            deltas = bbox_pred.permute(0, 2, 3, 1).reshape(batch, -1, head.bbox_coder.encode_size)
            values, index = top_candidates(scores, self.rpn_nms_pre)
            all_boxes.append(_decode(head.bbox_coder, priors[index], deltas[rows, index]))
            all_scores.append(values)  # -1 marks top_candidates' padding
            all_levels.append(torch.full_like(index, level))
        boxes = clip_boxes(torch.cat(all_boxes, 1), extents)
        scores = drop_small_boxes(boxes, torch.cat(all_scores, 1), self.min_bbox_size)
        levels = torch.cat(all_levels, 1)
        selected = batched_nms(boxes, scores, levels, self.rpn_iou_thr, self.rpn_max_per_img)
        kept, kept_levels, _ = detections_per_image(boxes, scores, levels, selected,
                                                    self.rpn_max_per_img)
        return kept[..., :4], kept_levels >= 0

    def candidates(self, feats: Sequence[Tensor], proposals: Tensor, valid: Tensor,
                   extents: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Every (proposal, class) pair: boxes (N, P * C, 4), scores (-1 = dropped), labels."""
        batch, num = proposals.shape[0], proposals.shape[1]
        bbox_head = self.roi_head.bbox_head
        bbox_feats = extract_roi_features(self.roi_head.bbox_roi_extractor, self.bbox_settings,
                                          feats, _rois(proposals))
        if self.roi_head.with_shared_head:
            bbox_feats = self.roi_head.shared_head(bbox_feats)
        cls_score, bbox_pred = bbox_head(bbox_feats)
        scores = cls_score.softmax(-1)[:, :-1]
        classes = scores.shape[-1]
        deltas = bbox_pred.reshape(batch, num, -1)
        boxes = _decode(bbox_head.bbox_coder, proposals, deltas)
        # (N, P, C, 4) whether the head regresses per class or class-agnostic, then flattened
        # proposal-major like multiclass_nms
        boxes = boxes.reshape(batch, num, -1, 4).expand(batch, num, classes, 4)
        boxes = clip_boxes(boxes.reshape(batch, -1, 4), extents)
        scores = scores.reshape(batch, num, classes)
        keep = (scores > self.score_thr) & valid.unsqueeze(-1)
        scores = torch.where(keep, scores, torch.full_like(scores, -1.0)).reshape(batch, -1)
        labels = torch.arange(classes, device=extents.device).repeat(num).unsqueeze(0).expand(
            batch, -1)
        return boxes, scores, labels

    def masks(self, feats: Sequence[Tensor], boxes: Tensor, labels: Tensor) -> Tensor:
        """(N, K, M, M) mask probabilities of the detections' own classes (zeros for padding)."""
        batch, num = boxes.shape[0], boxes.shape[1]
        mask_feats = extract_roi_features(self.mask_extractor, self.mask_settings, feats,
                                          _rois(boxes))
        if self.roi_head.with_shared_head:
            mask_feats = self.roi_head.shared_head(mask_feats)
        mask_preds = self.roi_head.mask_head(mask_feats)  # (N * K, classes or 1, M, M)
        flat = labels.reshape(-1)
        channel = torch.zeros_like(flat) if self.roi_head.mask_head.class_agnostic else \
            flat.clamp(min=0)
        rows = torch.arange(mask_preds.shape[0], device=boxes.device)
        probs = mask_preds[rows, channel].sigmoid() * (flat >= 0).to(
            mask_preds.dtype).reshape(-1, 1, 1)
        return probs.reshape(batch, num, probs.shape[-2], probs.shape[-1])


def _rois(boxes: Tensor) -> Tensor:
    """(N, P, 4) boxes as (N * P, 5) rois (image index, x1, y1, x2, y2), as ``bbox2roi``."""
    batch, num = boxes.shape[0], boxes.shape[1]
    image = torch.arange(batch, device=boxes.device, dtype=boxes.dtype).reshape(
        -1, 1, 1).expand(batch, num, 1)
    return torch.cat([image, boxes], dim=-1).reshape(-1, 5)


def _decode(coder, boxes: Tensor, deltas: Tensor) -> Tensor:
    """``coder.decode`` of (N, P, 4) boxes and (N, P, D) deltas as mmdet calls it per image:
    flattened to 2-D (``delta2bbox`` in PyTorch, the same arithmetic as ``onnx_delta2bbox``,
    which the coder takes while exporting), without clipping; (N, P, D) boxes."""
    decoded = coder.decode(boxes.reshape(-1, boxes.shape[-1]),
                           deltas.reshape(-1, deltas.shape[-1]))
    decoded = decoded.tensor if hasattr(decoded, 'tensor') else decoded  # use_box_type coders
    return decoded.reshape(deltas.shape)
