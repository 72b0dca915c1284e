"""mmrepghost_runtime: run end-to-end ONNX exports of mmrepghost models without PyTorch."""
from .backends import BACKENDS, OnnxInfo, Session, open_session, read_onnx_info
from .image import ImageError, decode_image, read_image
from .preprocess import ImageMeta, preprocess, preprocess_image, resize_image
from .sidecar import (FORMAT, PreprocessSpec, ResizeSpec, Sidecar, SidecarError, load_sidecar,
                      sidecar_path, write_sidecar)

__all__ = ['BACKENDS', 'OnnxInfo', 'Session', 'open_session', 'read_onnx_info', 'ImageError',
           'decode_image', 'read_image', 'ImageMeta', 'preprocess', 'preprocess_image',
           'resize_image', 'FORMAT', 'PreprocessSpec', 'ResizeSpec', 'Sidecar', 'SidecarError',
           'load_sidecar', 'sidecar_path', 'write_sidecar']
