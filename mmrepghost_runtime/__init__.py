"""mmrepghost_runtime: run end-to-end ONNX exports of mmrepghost models without PyTorch.

Needs only numpy, opencv-python, Pillow and a backend (onnxruntime, or openvino); nothing here
imports torch, mmcv, mmengine, mmdet, mmpretrain or mmrepghost. ::

    from mmrepghost_runtime import load_model, read_image, draw_result
    model = load_model('model.onnx')                  # + model.json, written by
    image, notes = read_image('demo.jpg')             #   tools/export_onnx.py --end2end
    [result] = model.predict([image])                 # Detections or Classification
    cv2.imwrite('out.jpg', draw_result(image, result))
"""
from .backends import BACKENDS, OnnxInfo, Session, open_session, read_onnx_info
from .draw import class_color, draw_classification, draw_detections, draw_result
from .image import ImageError, decode_image, read_image
from .model import DeployedModel, ModelError, check_model, load_model
from .outputs import OutputError, plan_outputs, write_image
from .postprocess import (Classification, Detections, classify, paste_masks,
                          rescale_detections, softmax)
from .preprocess import ImageMeta, preprocess, preprocess_image, resize_image
from .sidecar import (FORMAT, PreprocessSpec, ResizeSpec, Sidecar, SidecarError, load_sidecar,
                      sidecar_path, write_sidecar)

__all__ = [
    'BACKENDS', 'OnnxInfo', 'Session', 'open_session', 'read_onnx_info', 'class_color',
    'draw_classification', 'draw_detections', 'draw_result', 'ImageError', 'decode_image',
    'read_image', 'DeployedModel', 'ModelError', 'check_model', 'load_model', 'OutputError',
    'plan_outputs', 'write_image', 'Classification', 'Detections', 'classify', 'paste_masks',
    'rescale_detections', 'softmax', 'ImageMeta', 'preprocess', 'preprocess_image',
    'resize_image', 'FORMAT', 'PreprocessSpec', 'ResizeSpec', 'Sidecar', 'SidecarError',
    'load_sidecar', 'sidecar_path', 'write_sidecar'
]
