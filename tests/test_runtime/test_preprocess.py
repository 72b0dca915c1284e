"""preprocess equals mmdet's and mmpretrain's test pipeline + data preprocessor (batch, metas)."""
import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import CenterCrop, LoadImageFromFile
from mmdet.datasets.transforms import PackDetInputs
from mmdet.datasets.transforms import Resize as DetResize
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmengine.dataset import default_collate, pseudo_collate
from mmpretrain.datasets.transforms import PackInputs, ResizeEdge
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor

from mmrepghost_runtime.image import read_image
from mmrepghost_runtime.preprocess import ImageMeta, preprocess, resized_size
from mmrepghost_runtime.sidecar import PreprocessSpec, ResizeSpec

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
DET_META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'scale_factor')


def _smooth(h, w, channels, seed):
    rng = np.random.default_rng(seed)
    big = cv2.resize(rng.random((5, 7, channels)), (w, h), interpolation=cv2.INTER_CUBIC)
    return (big.clip(0, 1) * 255).astype(np.uint8).reshape(h, w, channels)


@pytest.fixture(scope='module')
def image_paths(tmp_path_factory):
    """Three non-square images of different sizes; one is a grayscale PNG."""
    root = tmp_path_factory.mktemp('preprocess')
    paths = [str(root / 'wide.jpg'), str(root / 'gray_tall.png'), str(root / 'small.png')]
    cv2.imwrite(paths[0], _smooth(237, 411, 3, 0))
    cv2.imwrite(paths[1], _smooth(500, 333, 1, 1)[..., 0])
    cv2.imwrite(paths[2], _smooth(77, 123, 3, 2))
    return paths


def _spec(resize, color_order='rgb', crop=None, pad=32, pad_value=0.0, nan_padding=False):
    return PreprocessSpec.from_dict({'color_order': color_order, 'resize': resize,
                                     'center_crop': crop, 'mean': MEAN, 'std': STD,
                                     'pad_divisor': pad, 'pad_value': pad_value,
                                     'nan_padding': nan_padding})


def _run_pipeline(paths, pipeline):
    data = []
    for path in paths:
        results = dict(img_path=path)
        for transform in pipeline:
            results = transform(results)
        data.append(results)
    return data


def _mmdet(paths, resize, **preprocessor):
    data = _run_pipeline(paths, [LoadImageFromFile(), resize,
                                 PackDetInputs(meta_keys=DET_META_KEYS)])
    out = DetDataPreprocessor(mean=MEAN, std=STD, **preprocessor)(pseudo_collate(data), False)
    return out['inputs'].numpy(), [s.metainfo for s in out['data_samples']]


def _assert_same(batch, metas, ref_batch, ref_metas, paths):
    assert batch.dtype == np.float32 and batch.shape == ref_batch.shape
    assert np.abs(batch - ref_batch).max() <= 1e-4
    for meta, ref, path in zip(metas, ref_metas, paths):
        assert meta.ori_shape == tuple(ref['ori_shape']), path
        assert meta.img_shape == tuple(ref['img_shape']), path
        assert meta.scale_factor == pytest.approx(tuple(ref['scale_factor']), abs=1e-12)
        if 'batch_input_shape' in ref:
            assert meta.pad_shape == tuple(ref['batch_input_shape'])


@pytest.mark.parametrize('scale', [(320, 320), (1333, 800)])
def test_mmdet_keep_ratio(image_paths, scale):
    ref_batch, ref_metas = _mmdet(image_paths, DetResize(scale=scale, keep_ratio=True),
                                  bgr_to_rgb=True, pad_size_divisor=32)
    spec = _spec({'type': 'keep_ratio', 'scale': list(scale), 'backend': 'cv2',
                  'interpolation': 'bilinear'})
    batch, metas = preprocess([read_image(p)[0] for p in image_paths], spec)
    _assert_same(batch, metas, ref_batch, ref_metas, image_paths)
    assert batch.shape[2] % 32 == 0 and batch.shape[3] % 32 == 0
    # the padding is pad_value (0) and the resized image fills the top-left corner
    h, w = metas[2].img_shape
    assert np.all(batch[2, :, h:, :] == 0) and np.all(batch[2, :, :, w:] == 0)
    if scale == (1333, 800):  # by hand: factor min(1333 / 500, 800 / 333) for 500x333
        assert metas[1].img_shape == (1201, 800) and metas[0].img_shape == (769, 1333)
    # nan_padding (detector graphs read each image's extent from it): NaN exactly there
    marked, _ = preprocess([read_image(p)[0] for p in image_paths],
                           _spec(spec.resize.to_dict(), nan_padding=True))
    padding = np.isnan(marked)
    for i, meta in enumerate(metas):
        h, w = meta.img_shape
        assert not padding[i, :, :h, :w].any() and padding[i].sum() == 3 * (
            marked.shape[2] * marked.shape[3] - h * w)
    np.testing.assert_array_equal(np.where(padding, 0, marked), batch)


def test_mmdet_fixed_size_bgr_and_pad_value(image_paths):
    ref_batch, ref_metas = _mmdet(image_paths, DetResize(scale=(300, 200), keep_ratio=False),
                                  bgr_to_rgb=False, pad_size_divisor=64, pad_value=7)
    spec = _spec({'type': 'fixed', 'size': [300, 200], 'backend': 'cv2',
                  'interpolation': 'bilinear'}, color_order='bgr', pad=64, pad_value=7.0)
    batch, metas = preprocess([read_image(p)[0] for p in image_paths], spec)
    _assert_same(batch, metas, ref_batch, ref_metas, image_paths)
    assert batch.shape == (3, 3, 256, 320)
    assert np.all(batch[:, :, 200:, :] == 7) and np.all(batch[:, :, :, 300:] == 7)
    assert metas[0].scale_factor == (300 / 411, 200 / 237)


def _mmpretrain(paths, resize, crop, **preprocessor):
    data = _run_pipeline(paths, [LoadImageFromFile(), resize] + ([crop] if crop else [])
                         + [PackInputs()])
    collate = default_collate if crop and len({r['inputs'].shape for r in data}) == 1 \
        else pseudo_collate
    out = ClsDataPreprocessor(mean=MEAN, std=STD, **preprocessor)(collate(data), False)
    return out['inputs'].numpy(), [s.metainfo for s in out['data_samples']]


@pytest.mark.parametrize('edge,backend,interpolation', [
    ('short', 'pillow', 'bicubic'), ('long', 'cv2', 'bilinear'), ('width', 'pillow', 'bilinear'),
    ('height', 'cv2', 'bicubic')])
def test_mmpretrain_resize_edge_center_crop(image_paths, edge, backend, interpolation):
    ref_batch, ref_metas = _mmpretrain(
        image_paths, ResizeEdge(scale=72, edge=edge, backend=backend,
                                interpolation=interpolation), CenterCrop(crop_size=64),
        to_rgb=True)
    spec = _spec({'type': 'resize_edge', 'edge': edge, 'scale': 72, 'backend': backend,
                  'interpolation': interpolation}, crop=[64, 64], pad=1)
    batch, metas = preprocess([read_image(p)[0] for p in image_paths], spec)
    assert batch.shape == ref_batch.shape
    assert np.abs(batch - ref_batch).max() <= 1e-4
    for meta, ref in zip(metas, ref_metas):
        assert meta.img_shape == tuple(ref['img_shape'])
        assert meta.ori_shape == tuple(ref['ori_shape'])
        assert meta.scale_factor == pytest.approx(tuple(ref['scale_factor']), abs=1e-12)


def test_mmpretrain_resize_edge_without_crop_pads_like_cls_preprocessor(image_paths):
    resize = dict(scale=72, edge='short', backend='pillow', interpolation='bicubic')
    ref_batch, _ = _mmpretrain(image_paths, ResizeEdge(**resize), None, to_rgb=True,
                               pad_size_divisor=8)
    batch, metas = preprocess([read_image(p)[0] for p in image_paths],
                              _spec(dict(type='resize_edge', **resize), pad=8))
    assert batch.shape == ref_batch.shape and np.abs(batch - ref_batch).max() <= 1e-4
    assert [m.img_shape for m in metas] == [(72, 124), (108, 72), (72, 115)]


def test_center_crop_larger_than_image_and_offsets():
    image = _smooth(50, 40, 3, 3)
    spec = _spec(None, crop=[30, 80], pad=1)
    batch, [meta] = preprocess([image], spec)
    assert meta.img_shape == (50, 30) and meta.crop_offset == (5, 0)
    assert meta.scale_factor == (1.0, 1.0)  # no resize step
    ref = CenterCrop(crop_size=(30, 80))(dict(img=image))['img']
    rgb = ref[..., ::-1].astype(np.float32)
    expected = ((rgb - np.float32(MEAN)) / np.float32(STD)).transpose(2, 0, 1)
    assert np.array_equal(batch[0], expected)


def test_resized_size_rules():
    keep = ResizeSpec('keep_ratio', scale=(1333, 800))
    assert resized_size(480, 640, keep) == (1067, 800)  # factor min(1333/640, 800/480)
    assert resized_size(100, 1000, keep) == (1333, 133)
    edge = ResizeSpec('resize_edge', scale=256, edge='short')
    assert resized_size(375, 500, edge) == (341, 256)  # int(256 * 500 / 375) = 341
    assert resized_size(500, 375, edge) == (256, 341)
    assert resized_size(300, 400, ResizeSpec('fixed', size=(224, 160))) == (224, 160)


def test_matches_torch_arithmetic_exactly():
    """(uint8 -> float32 - mean) / std in numpy is bit-identical to mmengine's torch ops."""
    image = _smooth(64, 64, 3, 4)
    spec = _spec({'type': 'fixed', 'size': [64, 64], 'backend': 'cv2',
                  'interpolation': 'bilinear'}, pad=1)
    batch, _ = preprocess([image], spec)
    tensor = torch.from_numpy(image.transpose(2, 0, 1).copy())[[2, 1, 0]].float()
    ref = (tensor - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert np.array_equal(batch[0], ref.numpy())


def test_bad_inputs():
    spec = _spec({'type': 'keep_ratio', 'scale': [320, 320], 'backend': 'cv2',
                  'interpolation': 'bilinear'})
    with pytest.raises(ValueError, match=r'image 1: expected a BGR uint8 array \(H, W, 3\) as '
                       r'read_image returns, got float32 array of shape \(4, 4, 3\)'):
        preprocess([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.float32)], spec)
    with pytest.raises(ValueError, match='got uint8 array of shape \\(4, 4\\)'):
        preprocess([np.zeros((4, 4), np.uint8)], spec)
    with pytest.raises(ValueError, match='a list of images'):
        preprocess(np.zeros((4, 4, 3), np.uint8), spec)
    with pytest.raises(ValueError, match='at least one image'):
        preprocess([], spec)
    with pytest.raises(ValueError, match='1000x1 pixels resizes to 320x0'):
        preprocess([np.zeros((1, 1000, 3), np.uint8)], spec)
    batch, [meta] = preprocess([np.zeros((10, 10, 3), np.uint8)], spec, pad_shape=(352, 384))
    assert batch.shape == (1, 3, 352, 384) and meta == ImageMeta((10, 10), (320, 320),
                                                                 (32.0, 32.0), (352, 384))
    with pytest.raises(ValueError, match='pad_shape'):
        preprocess([np.zeros((10, 10, 3), np.uint8)], spec, pad_shape=(320, 100))
    # a sidecar-style dict is accepted (validated)
    batch2, _ = preprocess([np.zeros((10, 10, 3), np.uint8)], spec.to_dict())
    assert batch2.shape == (1, 3, 320, 320)
