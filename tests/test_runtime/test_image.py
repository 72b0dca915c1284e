"""read_image gives exactly what mmcv's LoadImageFromFile gives, and says what it converted."""
import cv2
import numpy as np
import pytest
from mmcv.transforms import LoadImageFromFile
from PIL import Image

from mmrepghost_runtime.image import ImageError, decode_image, read_image


def _smooth(h, w, channels, dtype=np.uint8, seed=0):
    """A smooth random image (resizing and JPEG behave as on photos)."""
    rng = np.random.default_rng(seed)
    small = rng.random((4, 5, channels))
    top = 255 if dtype == np.uint8 else 65535
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1) * top
    return big.reshape(h, w, channels).astype(dtype)


def _write_files(root):
    """name -> (path, expected note fragments)."""
    files = {}

    def add(name, notes, write):
        path = str(root / name)
        write(path)
        files[name] = (path, notes)

    add('color.jpg', [], lambda p: cv2.imwrite(p, _smooth(45, 70, 3)))
    add('color.bmp', [], lambda p: cv2.imwrite(p, _smooth(33, 20, 3, seed=1)))
    add('gray.png', ['grayscale'], lambda p: cv2.imwrite(p, _smooth(40, 30, 1)[..., 0]))
    add('gray.jpg', ['grayscale'], lambda p: cv2.imwrite(p, _smooth(40, 30, 1)[..., 0]))
    add('rgba.png', ['alpha channel (RGBA or gray + alpha): alpha dropped'],
        lambda p: cv2.imwrite(p, _smooth(30, 50, 4, seed=2)))
    add('gray_alpha.png', ['alpha channel'],  # OpenCV decodes gray + alpha as BGRA
        lambda p: Image.fromarray(_smooth(30, 20, 2, seed=3), 'LA').save(p))
    add('rgb16.png', ['16-bit uint16 samples converted to 8 bits (value >> 8'],
        lambda p: cv2.imwrite(p, _smooth(25, 40, 3, np.uint16, seed=4)))
    add('gray16.png', ['grayscale', '16-bit'],
        lambda p: cv2.imwrite(p, _smooth(25, 40, 1, np.uint16, seed=5)[..., 0]))
    add('palette.png', [], lambda p: Image.fromarray(_smooth(20, 30, 3, seed=6)[..., ::-1])
        .convert('P', palette=Image.Palette.ADAPTIVE).save(p))

    def exif_rotated(path):
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        Image.fromarray(_smooth(30, 60, 3, seed=7)).save(path, exif=exif.tobytes())
    add('exif_rotated.jpg', ['EXIF orientation applied'], exif_rotated)
    return files


@pytest.fixture(scope='module')
def image_files(tmp_path_factory):
    return _write_files(tmp_path_factory.mktemp('images'))


NAMES = ['color.jpg', 'color.bmp', 'gray.png', 'gray.jpg', 'rgba.png', 'gray_alpha.png',
         'rgb16.png', 'gray16.png', 'palette.png', 'exif_rotated.jpg']


@pytest.mark.parametrize('name', NAMES)
def test_equals_mmcv_load_image_from_file(image_files, name):
    path, expected_notes = image_files[name]
    image, notes = read_image(path)
    reference = LoadImageFromFile()(dict(img_path=path))['img']
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape == reference.shape
    assert np.array_equal(image, reference)
    assert len(notes) == len(expected_notes), notes
    for fragment, note in zip(expected_notes, notes):
        assert fragment in note, (fragment, notes)


def test_conversions_are_those_of_imread_color(image_files):
    rgba, _ = read_image(image_files['rgba.png'][0])
    raw = cv2.imread(image_files['rgba.png'][0], cv2.IMREAD_UNCHANGED)
    assert np.array_equal(rgba, raw[..., :3])  # alpha dropped, not composited
    gray, _ = read_image(image_files['gray.png'][0])
    assert np.array_equal(gray[..., 0], gray[..., 2]) and np.array_equal(gray[..., 0],
                                                                         gray[..., 1])
    deep, _ = read_image(image_files['rgb16.png'][0])
    raw16 = cv2.imread(image_files['rgb16.png'][0], cv2.IMREAD_UNCHANGED)
    assert raw16.dtype == np.uint16
    assert np.array_equal(deep, (raw16 >> 8).astype(np.uint8))
    rotated, _ = read_image(image_files['exif_rotated.jpg'][0])
    assert rotated.shape[:2] == (60, 30)  # stored 30 x 60, shown rotated
    quiet, notes = read_image(image_files['rgb16.png'][0], with_notes=False)
    assert notes == [] and np.array_equal(quiet, deep)


def test_not_an_image(tmp_path):
    text = tmp_path / 'notes.txt'
    text.write_text('not an image')
    with pytest.raises(ImageError, match=r'notes\.txt: not an image OpenCV can decode'):
        read_image(text)
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    with pytest.raises(ImageError, match=r'empty\.jpg: an empty file'):
        read_image(empty)
    truncated = tmp_path / 'truncated.png'
    ok, data = cv2.imencode('.png', _smooth(20, 20, 3))
    truncated.write_bytes(data.tobytes()[:40])
    with pytest.raises(ImageError, match=r'truncated\.png'):
        read_image(truncated)
    with pytest.raises(ImageError, match=r'missing\.jpg: cannot read the file \(No such file'):
        read_image(tmp_path / 'missing.jpg')
    with pytest.raises(ImageError, match=rf'{tmp_path}: cannot read the file'):
        read_image(tmp_path)  # a folder
    assert issubclass(ImageError, ValueError)


def test_decode_bytes(image_files):
    path = image_files['color.jpg'][0]
    with open(path, 'rb') as f:
        image, notes = decode_image(f.read(), name='x.jpg')
    assert np.array_equal(image, read_image(path)[0]) and notes == []
