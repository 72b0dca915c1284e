"""mmrepghost_runtime: run end-to-end ONNX exports of mmrepghost models without PyTorch."""
from .image import ImageError, decode_image, read_image
from .preprocess import ImageMeta, preprocess, preprocess_image, resize_image
from .sidecar import (FORMAT, PreprocessSpec, ResizeSpec, Sidecar, SidecarError, load_sidecar,
                      sidecar_path, write_sidecar)

__all__ = ['ImageError', 'decode_image', 'read_image', 'ImageMeta', 'preprocess',
           'preprocess_image', 'resize_image', 'FORMAT', 'PreprocessSpec', 'ResizeSpec',
           'Sidecar', 'SidecarError', 'load_sidecar', 'sidecar_path', 'write_sidecar']
