"""Postprocessing: boxes back to the original image, masks pasted like mmdet, top-k classes."""
import numpy as np
import pytest
import torch
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask

from mmrepghost_runtime.postprocess import classify, paste_masks, rescale_detections, softmax
from mmrepghost_runtime.preprocess import ImageMeta

CLASSES = ('disc', 'triangle', 'rectangle')


def _mmdet_paste(masks, boxes, height, width, threshold):
    """mmdet FCNMaskHead._predict_by_feat_single's CPU path: one box at a time, skip_empty."""
    out = torch.zeros(len(boxes), height, width, dtype=torch.bool)
    for i in range(len(boxes)):
        chunk, spatial = _do_paste_mask(torch.from_numpy(masks[i:i + 1, None]),
                                        torch.from_numpy(boxes[i:i + 1]), height, width,
                                        skip_empty=True)
        out[(slice(i, i + 1), ) + spatial] = chunk >= threshold
    return out.numpy()


def _random_boxes(rng, count, height, width):
    """Boxes overlapping the image, some reaching past it (mmdet's detections are clipped to
    the resized image, which is the original one up to rounding), and five special ones."""
    x0 = rng.uniform(-0.2 * width, 0.9 * width, count)
    y0 = rng.uniform(-0.2 * height, 0.9 * height, count)
    x1 = np.maximum(x0 + rng.uniform(1, 0.7 * width, count), 1)
    y1 = np.maximum(y0 + rng.uniform(1, 0.7 * height, count), 1)
    boxes = np.stack([x0, y0, x1, y1], axis=1)
    boxes[:5] = [[3.3, 4.7, 9.1, 8.2],  # small
                 [0, 0, width, height],  # the whole image
                 [10.5, 10.5, 11.0, 40.0],  # thin
                 [width - 2.5, height - 3.5, width + 5, height + 5],  # past the corner
                 [20.0, 30.0, 20.0, 30.0]]  # empty
    return boxes.astype(np.float32)


@pytest.mark.parametrize('threshold', [0.3, 0.5, 0.7])
def test_paste_masks_matches_mmdet(threshold):
    rng = np.random.default_rng(int(threshold * 10))
    height, width = 97, 131
    boxes = _random_boxes(rng, 40, height, width)
    # smooth and rough masks: smooth ones have long iso-lines where rounding could matter
    rough = rng.random((20, 28, 28))
    yy, xx = np.mgrid[0:28, 0:28]
    smooth = np.stack([1 / (1 + np.exp(-((xx - c) * s + (yy - 14) * t)))
                       for c, s, t in rng.uniform([5, -1, -1], [23, 1, 1], (20, 3))])
    masks = np.concatenate([rough, smooth]).astype(np.float32)
    ours = paste_masks(masks, boxes, height, width, threshold)
    ref = _mmdet_paste(masks, boxes, height, width, threshold)
    assert ours.dtype == bool and ours.shape == (40, height, width)
    agreement = (ours == ref).mean()
    assert agreement >= 0.999, agreement
    assert ours.sum() > 10000  # not trivially empty (measured: 0 pixels differ)
    # nothing outside each box's one-pixel margin
    for mask, (x0, y0, x1, y1) in zip(ours, boxes):
        ys, xs = np.nonzero(mask)
        if len(xs):
            assert xs.min() >= np.floor(x0) - 1 and xs.max() < np.ceil(x1) + 1
            assert ys.min() >= np.floor(y0) - 1 and ys.max() < np.ceil(y1) + 1


def test_paste_masks_geometry():
    """A mask whose left half is 1 over the box (10, 20)-(50, 40) covers x 10..30, y 20..40."""
    mask = np.zeros((28, 28), np.float32)
    mask[:, :14] = 1
    [pasted] = paste_masks(mask[None], np.array([[10, 20, 50, 40]], np.float32), 60, 80, 0.5)
    ys, xs = np.nonzero(pasted)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 29, 20, 39)
    assert pasted.sum() == 20 * 20
    with pytest.raises(ValueError, match='do not fit 2 boxes'):
        paste_masks(mask[None], np.zeros((2, 4), np.float32), 60, 80)


def test_rescale_detections():
    dets = np.array([[10, 20, 110, 220, 0.9],  # inside
                     [-5, 300, 700, 500, 0.5],  # reaches past the original image
                     [0, 0, 0, 0, 0.0],  # padding
                     [30, 30, 60, 60, 0.2]], np.float32)
    labels = np.array([2, 0, -1, 1])
    meta = ImageMeta(ori_shape=(200, 300), img_shape=(400, 600), scale_factor=(2.0, 2.0),
                     pad_shape=(416, 608))
    result = rescale_detections(dets, labels, meta, CLASSES)
    assert len(result) == 3 and result.masks is None and result.image_shape == (200, 300)
    np.testing.assert_allclose(result.bboxes, [[5, 10, 55, 110], [0, 150, 300, 200],
                                               [15, 15, 30, 30]])
    assert result.bboxes.dtype == np.float32 and result.labels.dtype == np.int64
    assert result.class_names == ('rectangle', 'disc', 'triangle')
    np.testing.assert_allclose(result.scores, [0.9, 0.5, 0.2])
    high = rescale_detections(dets, labels, meta, CLASSES, score_thr=0.5)
    assert high.class_names == ('rectangle', 'disc')
    # anisotropic scale factors and a crop offset
    meta = ImageMeta((100, 100), (50, 200), (2.0, 0.5), (64, 224), crop_offset=(4, 6))
    result = rescale_detections(dets[:1], labels[:1], meta, CLASSES)
    np.testing.assert_allclose(result.bboxes, [[7, 52, 57, 100]])
    with pytest.raises(ValueError, match='label 3 but the sidecar lists 3 classes'):
        rescale_detections(dets[:1], np.array([3]), meta, CLASSES)


def test_rescale_detections_with_masks():
    dets = np.array([[10, 20, 50, 40, 0.9], [0, 0, 0, 0, 0]], np.float32)
    masks = np.zeros((2, 28, 28), np.float32)
    masks[0, :, :14] = 0.6
    meta = ImageMeta((30, 40), (60, 80), (2.0, 2.0), (64, 96))
    result = rescale_detections(dets, np.array([1, -1]), meta, CLASSES, masks=masks,
                                mask_thr=0.5)
    assert result.masks.shape == (1, 30, 40) and result.masks.dtype == bool
    ys, xs = np.nonzero(result.masks[0])
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (5, 14, 10, 19)
    assert not rescale_detections(dets, np.array([1, -1]), meta, CLASSES, masks=masks,
                                  mask_thr=0.7).masks.any()


def test_classify_probs_and_logits():
    probs = np.array([0.2, 0.5, 0.3], np.float32)
    result = classify(probs, CLASSES, topk=5)
    assert list(result.top_indices) == [1, 2, 0] and result.top_names == (
        'triangle', 'rectangle', 'disc')
    np.testing.assert_allclose(result.top_scores, [0.5, 0.3, 0.2])
    assert result.label == 1 and result.name == 'triangle'
    logits = np.array([1.0, 3.0, -2.0], np.float32)
    result = classify(logits, CLASSES, is_logits=True, topk=2)
    expected = np.exp(logits) / np.exp(logits).sum()
    np.testing.assert_allclose(result.scores, expected, rtol=1e-6)
    assert list(result.top_indices) == [1, 0] and len(result.top_names) == 2
    np.testing.assert_allclose(softmax(np.array([1000.0, 1000.0])), [0.5, 0.5])  # stable
    with pytest.raises(ValueError, match='4 class scores but the sidecar lists 3 classes'):
        classify(np.zeros(4), CLASSES)
