"""mmrepghost_runtime: run end-to-end ONNX exports of mmrepghost models without PyTorch."""
from .sidecar import (FORMAT, PreprocessSpec, ResizeSpec, Sidecar, SidecarError, load_sidecar,
                      sidecar_path, write_sidecar)

__all__ = ['FORMAT', 'PreprocessSpec', 'ResizeSpec', 'Sidecar', 'SidecarError', 'load_sidecar',
           'sidecar_path', 'write_sidecar']
