"""Backend sessions for end-to-end ONNX files: onnxruntime, or OpenVINO reading the same file.

:func:`open_session` returns a :class:`Session`: ``input_name``, ``output_names`` (in the ONNX
graph's order for both backends), ``metadata`` (the model's ``metadata_props``) and
``run(batch) -> {name: array}``. :func:`read_onnx_info` reads the input/output names and the
metadata from the file itself with a small protobuf reader (no ``onnx`` package needed, the
weights are skipped, not parsed).
"""
import importlib
import mmap
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = ['BACKENDS', 'Session', 'OnnxInfo', 'open_session', 'read_onnx_info']

BACKENDS = ('onnxruntime', 'openvino')
_PIP = {'onnxruntime': 'onnxruntime', 'openvino': 'openvino'}


class Session:
    """What every backend session offers."""
    backend: str
    path: str
    input_name: str
    output_names: Tuple[str, ...]
    metadata: Dict[str, str]

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class OnnxInfo:
    """The graph's real inputs (initializers excluded), its outputs and ``metadata_props``."""
    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    metadata: Dict[str, str]


def open_session(model_path: str, backend: str = 'onnxruntime',
                 threads: Optional[int] = None) -> Session:
    """A session running ``model_path`` on the CPU with ``threads`` threads (None: backend's).

    ``ValueError`` for an unknown backend; ``ImportError`` naming the pip package when the
    backend is not installed; ``FileNotFoundError`` for a missing file.
    """
    if backend not in BACKENDS:
        raise ValueError(f'unknown backend {backend!r}; available: {", ".join(BACKENDS)}')
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f'threads = {threads!r}: expected a positive integer or None')
    model_path = str(model_path)
    if not osp.isfile(model_path):
        raise FileNotFoundError(f'{model_path}: no such model file')
    module = _import_backend(backend)
    if backend == 'onnxruntime':
        return _OrtSession(module, model_path, threads)
    return _OpenVINOSession(module, model_path, threads)


def _import_backend(backend: str):
    try:
        return importlib.import_module(backend)
    except ImportError as e:
        raise ImportError(f'backend {backend!r} is not installed ({e}); install it with '
                          f'`pip install {_PIP[backend]}`') from None


class _OrtSession(Session):
    backend = 'onnxruntime'

    def __init__(self, ort, path: str, threads: Optional[int]) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.path = path
        try:
            self._session = ort.InferenceSession(path, options,
                                                 providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime raises its own (Fail, InvalidGraph, ...)
            raise ValueError(f'{path}: onnxruntime cannot load the model: {e}') from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f'{path}: the model has {len(inputs)} inputs '
                             f'({", ".join(i.name for i in inputs)}); expected one image batch')
        self.input_name = inputs[0].name
        self.output_names = tuple(o.name for o in self._session.get_outputs())
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        outputs = self._session.run(list(self.output_names), {self.input_name: batch})
        return dict(zip(self.output_names, outputs))


class _OpenVINOSession(Session):
    backend = 'openvino'

    def __init__(self, ov, path: str, threads: Optional[int]) -> None:
        self.path = path
        info = read_onnx_info(path)
        config = {'INFERENCE_PRECISION_HINT': 'f32'}  # no bf16/f16 on CPUs that have them
        if threads is not None:
            config['INFERENCE_NUM_THREADS'] = threads
        try:
            core = ov.Core()
            self._compiled = core.compile_model(core.read_model(path), 'CPU', config)
        except Exception as e:  # OpenVINO raises RuntimeError / its own exceptions
            raise ValueError(f'{path}: OpenVINO cannot load the model: {e}') from None
        if len(self._compiled.inputs) != 1:
            raise ValueError(f'{path}: the model has {len(self._compiled.inputs)} inputs; '
                             'expected one image batch')
        self.input_name = self._compiled.inputs[0].get_any_name()
        # OpenVINO may rename or reorder outputs: address each by its ONNX name
        self._ports = {}
        for name in info.outputs:
            ports = [p for p in self._compiled.outputs if name in p.get_names()]
            if len(ports) != 1:
                raise ValueError(f'{path}: OpenVINO has no output named {name!r} (its outputs: '
                                 f'{[sorted(p.get_names()) for p in self._compiled.outputs]})')
            self._ports[name] = ports[0]
        self.output_names = info.outputs
        self.metadata = dict(info.metadata)
        self._request = self._compiled.create_infer_request()

    def run(self, batch: np.ndarray) -> Dict[str, np.ndarray]:
        self._request.infer({0: batch})
        return {name: np.array(self._request.get_tensor(port).data, copy=True)
                for name, port in self._ports.items()}


# --- a small reader of the ONNX protobuf (onnx.proto field numbers) ---------------------------
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 5, 11, 12
_NAME = 1  # ValueInfoProto.name, TensorProto... (field 8 is TensorProto.name)
_TENSOR_NAME = 8


def _varint(buf, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError('truncated varint')
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError('varint too long')


def _fields(buf, start: int, end: int):
    """(field number, wire type, value) of a message; value: int, or (start, end) of bytes."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f'unsupported protobuf wire type {wire}')
        if pos > end or number == 0:
            raise ValueError('truncated or corrupted message')
        yield number, wire, value


def _string(buf, span, number: int) -> Optional[str]:
    for field_number, wire, value in _fields(buf, *span):
        if field_number == number and wire == 2:
            return bytes(buf[value[0]:value[1]]).decode('utf-8')
    return None


def read_onnx_info(path: str) -> OnnxInfo:
    """Input and output names and ``metadata_props`` of the ONNX file ``path``.

    ``ValueError`` when the file is not an ONNX model.
    """
    path = str(path)
    with open(path, 'rb') as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise ValueError(f'{path}: an empty file, not an ONNX model') from None
    try:
        return _parse_model(buf)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f'{path}: not a readable ONNX model ({e})') from None
    finally:
        buf.close()


def _parse_model(buf) -> OnnxInfo:
    metadata: Dict[str, str] = {}
    graph = None
    for number, wire, value in _fields(buf, 0, len(buf)):
        if number == _MODEL_GRAPH and wire == 2:
            graph = value
        elif number == _MODEL_METADATA and wire == 2:
            key, val = _string(buf, value, 1), _string(buf, value, 2)
            metadata[key or ''] = val or ''
    if graph is None:
        raise ValueError('no graph')
    inputs: List[str] = []
    outputs: List[str] = []
    initializers = set()
    for number, wire, value in _fields(buf, *graph):
        if wire != 2:
            continue
        if number == _GRAPH_INPUT:
            inputs.append(_string(buf, value, _NAME) or '')
        elif number == _GRAPH_OUTPUT:
            outputs.append(_string(buf, value, _NAME) or '')
        elif number == _GRAPH_INITIALIZER:
            initializers.add(_string(buf, value, _TENSOR_NAME))
    return OnnxInfo(tuple(i for i in inputs if i not in initializers), tuple(outputs),
                    metadata)
