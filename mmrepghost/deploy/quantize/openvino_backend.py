"""INT8 for OpenVINO: NNCF post-training quantization of an end-to-end ONNX file.

The output is again an end-to-end ``.onnx`` file, now with QuantizeLinear/DequantizeLinear
pairs (QDQ) around the network's layers, and its sidecar (a copy of the model's with a new
``export_id``, also written into the graph's ``mmrepghost.export_id`` metadata). OpenVINO
reads the QDQ pairs as FakeQuantize operations and runs the layers with int8 kernels, so the
file runs unchanged in ``mmrepghost_runtime`` with ``--backend openvino``
(``tools/deploy_infer.py``, ``tools/deploy_test.py``). NNCF's OpenVINO backend (``ov.Model``
-> IR ``.xml``) places the same kind of FakeQuantize operations and was measured no faster
on RepGhostNet models; the runtime reads only ``.onnx``, so the ONNX route is used.

How the file is made (:func:`quantize_openvino`):

* The network (:func:`.onnx_graph.network_nodes`: weighted layers and the feature-map
  operators between them) is cut out as an ONNX model of its own; its inputs are the tensors
  the rest of the graph hands it (the padded image after the NaN-padding reader, resize
  sizes, a two-stage detector's RoiAlign features), computed per calibration image by the
  fp32 graph's own nodes in onnxruntime. Everything else (padding reader, box decoding,
  TopK, NMS, RoiAlign...) never reaches NNCF and stays fp32; NNCF's graph matching, which
  dominates its run time, sees ~200 nodes instead of a detector's ~1,800.
* NNCF (``nncf.quantize``, ONNX backend, ``target_device=CPU``: OpenVINO's CPU rules, which
  e.g. leave squeeze-excitation convs fp32) quantizes it: per-channel symmetric int8
  weights, per-tensor int8 activations (min-max), fast bias correction, calibrated on the
  images preprocessed as the runtime preprocesses them (the sidecar's ``preprocess``, NaN
  padding included). The ``exclude``-d layers (shell-style patterns of the Conv/Gemm/MatMul
  node names, :func:`.common.match_patterns`) are NNCF's ignored scope.
* The quantized network is put back into the graph (nodes re-sorted topologically).
* Every Conv/Gemm/MatMul is one :class:`.common.LayerRecord`; its precision is read back from
  the graph (int8 when its weight is the output of a DequantizeLinear).

Measurements (OpenVINO on this machine, ``threads`` threads, batch 1; fp32 always with
``INFERENCE_PRECISION_HINT`` f32 as the runtime's sessions, so CPUs defaulting to bf16 do
not blur fp32 vs int8):

* each layer alone: ``sqnr_db``/``cosine`` of its output computed from the **fp32** input
  through the int8 graph's own quantizers, int8 weights and corrected bias, against the fp32
  layer's output, on the first :data:`ERROR_IMAGES` calibration inputs. One probe graph
  holds the fp32 network plus such an int8 clone of every int8 layer, so the error is the
  layer's own, not what accumulated upstream.
* each layer's time: OpenVINO's per-node profiling (``PERF_COUNT``) of the fp32 network and
  of two separately compiled int8 networks, ``runs`` inferences each, interleaved (the order
  rotates), on the first calibration input, the mean ms over those runs (OpenVINO reports
  each node's mean since compilation, :mod:`mmrepghost.utils.ov_profile`; int8: the lower of
  the two compilations'); a layer's time is its (fused) kernel plus the Reorder nodes OpenVINO puts
  in front of it and the standalone FakeQuantize nodes that quantize its input (shared ones
  split among their layers): the quantize/dequantize cost the int8 layer brings.
* ``auto_exclude``: an int8 layer stays fp32 when its SQNR alone is under
  :data:`AUTO_MIN_SQNR_DB`, or when its int8 time exceeds its fp32 time by more than
  :data:`AUTO_SLOWER` (ratio) and by :data:`AUTO_MIN_GAIN_MS` or more (profiling counts
  whole microseconds). (On a
  loaded 2-core machine a 0.2-0.7 ms stall was seen to land on one node in most runs of a
  compiled model, a different node each compilation: hence two int8 compilations.) Then
  NNCF quantizes again with those layers in the ignored scope. Nothing is decided from a
  list of names or types.
  The end-to-end latency of the int8 model before the exclusions is timed in the same loop
  as the final one, so the report shows whether they paid off.
* ``latency``: the input (fp32) and the output (int8) in OpenVINO through the runtime's own
  sessions (``open_session``), and the input in onnxruntime for reference, timed
  interleaved in one loop on the first calibration input, median ms, ``ratio`` = int8 /
  fp32.
* ``outputs``: the **raw network outputs** (the tensors the decoding or the softmax reads:
  a detector's per-level class and box maps, a classifier's logits), int8 vs fp32 in
  OpenVINO, on the first :data:`ERROR_IMAGES` calibration inputs: the worst tensor's cosine
  and SQNR; plus, from the full graphs, a classifier's top-1 agreement, or the share of a
  detector's fp32 detections scoring >= :data:`DET_SCORE_THR` that int8 finds again (same
  label, IoU >= 0.5).
"""
import contextlib
import copy
import heapq
import logging
import os.path as osp
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from mmrepghost_runtime.backends import open_session
from mmrepghost_runtime.files import atomic_write
from mmrepghost_runtime.model import META_EXPORT_ID, ModelError, load_model
from mmrepghost_runtime.sidecar import Sidecar, load_sidecar, sidecar_path, write_sidecar

from ...utils.ov_profile import mean_times, snapshot
from ...utils.timing import measure_interleaved
from .common import (LayerRecord, QuantizeError, QuantizeReport, calibration_inputs, cosine,
                     match_patterns, require, sqnr_db)
from .onnx_graph import (WEIGHTED_OPS, check_output_pair, network_nodes, not_deployed,
                         onnx_layer_kind, set_metadata)

__all__ = ['quantize_openvino', 'quantize_graph_nncf', 'int8_layers', 'quantizer_nodes',
           'AUTO_SLOWER', 'AUTO_MIN_GAIN_MS', 'AUTO_MIN_SQNR_DB', 'ERROR_IMAGES',
           'DET_SCORE_THR']

PURPOSE = 'the openvino backend (NNCF post-training quantization)'
#: auto_exclude: int8 time / fp32 time above which a layer is "slower in int8" ...
AUTO_SLOWER = 1.1
#: ... provided it loses at least this much (ms): profiling counts whole microseconds
AUTO_MIN_GAIN_MS = 0.005
#: auto_exclude: a layer whose int8 output alone is below this SQNR stays fp32
AUTO_MIN_SQNR_DB = 20.0
#: calibration inputs the per-layer and output errors are measured on (the first ones)
ERROR_IMAGES = 4
#: detections compared between fp32 and int8 (mmdet's inferencer's default threshold)
DET_SCORE_THR = 0.3
META_QUANTIZATION = 'mmrepghost.quantization'
META_SOURCE_EXPORT_ID = 'mmrepghost.source_export_id'
_PREFIX = 'mmrepghost_int8_probe/'
_QDQ = ('QuantizeLinear', 'DequantizeLinear')
_CONSTANT = ('Constant', 'Identity')  # producers of constants the network may read


def quantize_openvino(model_path: str, out: str, calib_paths: Sequence[str],
                      exclude: Sequence[str] = (), auto_exclude: bool = False,
                      threads: int = 1, runs: int = 20, overwrite: bool = False,
                      log: Callable[[str], None] = print) -> QuantizeReport:
    """Quantize the end-to-end ONNX ``model_path`` to ``out`` (+ sidecar) for OpenVINO.

    See the module doc for the method and the measurements. ``calib_paths``: calibration
    image files (:func:`.common.calibration_paths`: the config's train split); ``exclude``:
    shell-style patterns of weighted-layer node names kept fp32; ``threads``/``runs``: the
    latency and profiling measurements; ``log``: progress lines.

    Errors (nothing is written): ``ImportError`` naming the pip package when nncf or openvino
    is missing; :class:`.common.QuantizeError` for ``out`` equal to the model or not ending
    in ``.onnx``, a model with BatchNormalization nodes (not deployed), a raw-output file or
    a sidecar of another export, a pattern that matches no layer, missing calibration images;
    ``FileExistsError`` when ``out`` or its sidecar exists and not ``overwrite``;
    ``FileNotFoundError`` for a missing model; ``SidecarError`` for an invalid sidecar.
    """
    start = time.perf_counter()
    nncf = require('nncf', 'nncf', PURPOSE)
    ov = require('openvino', 'openvino', PURPOSE)
    onnx = require('onnx', 'onnx', PURPOSE)
    ort = require('onnxruntime', 'onnxruntime', PURPOSE)
    model_path, out = str(model_path), str(out)
    for name, value in (('threads', threads), ('runs', runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise QuantizeError(f'{name} = {value!r}: expected a positive integer')
    calib_paths = [str(p) for p in calib_paths]
    if not calib_paths:
        raise QuantizeError('no calibration images: expected at least one image path')
    missing = [p for p in calib_paths if not osp.isfile(p)]
    if missing:
        raise QuantizeError(f'{len(missing)} calibration images do not exist (e.g. '
                            f"{missing[0]}); check the config's train split")
    check_output_pair(model_path, out, overwrite, 'openvino')
    sidecar = load_sidecar(model_path)
    proto = onnx.load(model_path)
    bn = not_deployed(proto.graph)
    if bn:
        raise QuantizeError(
            f'{model_path} is not a deployed model: it has {len(bn)} BatchNormalization nodes '
            f'(e.g. {bn[0]!r}); reparameterize the checkpoint (tools/reparameterize.py) and '
            'export the deploy checkpoint with tools/export_onnx.py --end2end')
    try:
        network = network_nodes(proto.graph)
    except ValueError as e:
        raise QuantizeError(f'{model_path}: {e}') from None
    nodes = {node.name: node for node in proto.graph.node}
    layers = [name for name in network if nodes[name].op_type in WEIGHTED_OPS]
    if not layers:
        raise QuantizeError(f'{model_path} has no Conv, Gemm or MatMul layer to quantize')
    user = match_patterns(layers, list(exclude), 'weighted layers (Conv/Gemm/MatMul nodes)')
    try:  # the file and its sidecar belong together; the fp32 session of the latency check
        fp32_model = load_model(model_path, 'openvino', threads)
    except ModelError as e:
        raise QuantizeError(str(e)) from None

    preprocess = sidecar.preprocess.to_dict()
    probe_inputs = list(calibration_inputs(calib_paths[:ERROR_IMAGES], preprocess))
    net = _Network(onnx, ort, proto, network, probe_inputs[0])
    probe_feeds = [net.feed(x) for x in probe_inputs]
    calibration = _Calibration(calib_paths, preprocess)
    notes: List[str] = [f'the network: {len(network)} of {len(proto.graph.node)} nodes, '
                        f'inputs {", ".join(net.inputs)}']
    log(f'quantizing {len(layers)} layers ({len(user)} excluded) with NNCF '
        f'{nncf.__version__} on {len(calib_paths)} calibration images; the other '
        f'{len(proto.graph.node) - len(network)} nodes stay fp32')
    candidate = _nncf_quantize(nncf, net, calibration, sorted(user))
    with tempfile.TemporaryDirectory(prefix='mmrepghost-openvino-') as tmp:
        paths = {key: osp.join(tmp, f'{key}.onnx') for key in
                 ('network', 'candidate', 'probe', 'final', 'int8', 'before')}
        onnx.save(net.model, paths['network'])
        onnx.save(candidate, paths['candidate'])
        log(f'measuring every layer: error alone on {len(probe_feeds)} inputs, kernel times '
            f'({runs} profiled runs, {threads} thread(s))')
        onnx.save(_layer_probe(onnx, net.model, candidate, layers), paths['probe'])
        errors, shapes, fp32_values = _layer_errors(ov, paths['probe'], probe_feeds, threads,
                                                    net.model, layers)
        fp32_ms, int8_ms, unattributed, compiled = _profile(
            ov, paths['network'], paths['candidate'], candidate, layers, probe_feeds[0],
            threads, runs)
        notes.append('per-layer times: profiled kernels with their reorders and standalone '
                     f'quantize nodes; int8 nodes left unattributed take {unattributed:.3f} ms')
        measured = set(int8_layers(candidate.graph))
        auto: Dict[str, str] = {}
        final = candidate
        if auto_exclude:
            auto = _decide(layers, measured, fp32_ms, int8_ms, errors)
            log(f'auto-exclude: {len(auto)} of {len(measured)} int8 layers stay fp32' +
                ''.join(f'\n  {name}: {why}' for name, why in auto.items()))
            if auto:
                final = _nncf_quantize(nncf, net, calibration, sorted(user) + sorted(auto))
        onnx.save(final, paths['final'])
        records = _records(net.model.graph, layers, set(int8_layers(final.graph)), measured,
                           user, auto, shapes, fp32_ms, int8_ms, errors, auto_exclude)

        # the file and its sidecar, checked in the runtime before anything is written
        export_id = uuid.uuid4().hex
        new_sidecar = Sidecar.from_dict(dict(sidecar.to_dict(), export_id=export_id))
        full = net.merge(final)
        set_metadata(full, {
            META_EXPORT_ID: export_id, META_SOURCE_EXPORT_ID: sidecar.export_id,
            META_QUANTIZATION: f'int8 QDQ, NNCF {nncf.__version__} for OpenVINO CPU, '
                               'per-channel weights'})
        onnx.save(full, paths['int8'])
        write_sidecar(new_sidecar, sidecar_path(paths['int8']))
        try:
            int8_model = load_model(paths['int8'], 'openvino', threads)
        except (ModelError, ValueError) as e:  # pragma: no cover - an NNCF output OV refuses
            raise QuantizeError(f'the quantized model does not run in OpenVINO: {e}') from None
        final_compiled = (compiled if final is candidate else
                          _compile(ov, paths['final'], threads))
        outputs = _compare_outputs(final_compiled, probe_feeds, fp32_values, net,
                                   fp32_model.session, int8_model.session, probe_inputs,
                                   sidecar)
        log(f'latency: fp32 vs int8 in OpenVINO, interleaved, {runs} runs')
        sessions = {'fp32_ms': fp32_model.session, 'int8_ms': int8_model.session,
                    'onnxruntime_fp32_ms': open_session(model_path, 'onnxruntime', threads)}
        if final is not candidate:  # did the exclusions pay off? the same loop tells
            onnx.save(net.merge(candidate), paths['before'])
            sessions['int8_before_auto_exclude_ms'] = open_session(paths['before'],
                                                                   'openvino', threads)
        latency = _latency(sessions, probe_inputs[0], threads, runs)
        _write_pair(paths['int8'], new_sidecar, out, overwrite)
    seconds = time.perf_counter() - start
    log(f'wrote {out} ({sum(r.precision == "int8" for r in records)} int8 layers, '
        f'{seconds:.1f} s)')
    if auto_exclude:
        notes.append(f'--auto-exclude kept {len(auto)} layers fp32 (SQNR alone under '
                     f'{AUTO_MIN_SQNR_DB:g} dB, or int8 slower than {AUTO_SLOWER:g}x fp32 '
                     f'and by {AUTO_MIN_GAIN_MS:g} ms or more)')
    return QuantizeReport(
        backend='openvino', model=model_path, out=out,
        config=str(sidecar.source.get('config') or ''),
        calibration=dict(split='train', images=len(calib_paths),
                         method=f'NNCF {nncf.__version__} min-max, per-channel symmetric '
                                'weights, per-tensor activations, fast bias correction, '
                                'target_device CPU',
                         inputs='the sidecar preprocessing (as the runtime feeds the model)'),
        layers=records, latency=latency, outputs=outputs,
        notes=notes + [f'quantized and measured in {seconds:.1f} s'])


def int8_layers(graph) -> List[str]:
    """Names of the Conv/Gemm/MatMul nodes of a QDQ graph that run in int8 (their weight is
    the output of a DequantizeLinear)."""
    producer = {name: node for node in graph.node for name in node.output}
    return [node.name for node in graph.node if node.op_type in WEIGHTED_OPS
            and len(node.input) > 1 and node.input[1] in producer
            and producer[node.input[1]].op_type == 'DequantizeLinear']


def quantizer_nodes(graph, source_graph) -> Dict[str, List[str]]:
    """Where the activation quantizers sit: for each QuantizeLinear of the QDQ ``graph`` that
    quantizes an activation (not a weight), the names of the nodes that read the quantized
    tensor through its DequantizeLinear (``'(op name)'`` for nodes not in ``source_graph``,
    the fp32 graph)."""
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    initializers = {t.name for t in graph.initializer}
    source_names = {node.name for node in source_graph.node}
    placed: Dict[str, List[str]] = {}
    for node in graph.node:
        if node.op_type != 'QuantizeLinear' or node.input[0] in initializers:
            continue
        placed[node.name] = [
            reader.name if reader.name in source_names else f'({reader.op_type} {reader.name})'
            for dq in consumers[node.output[0]] for reader in consumers[dq.output[0]]]
    return placed


# --- arguments, files --------------------------------------------------------------------------
def _write_pair(staged: str, sidecar: Sidecar, out: str, overwrite: bool) -> None:
    """``staged`` to ``out`` and ``sidecar`` beside it, each atomically; the sidecar is
    written inside the model's write, so a failure of either leaves ``out`` as it was."""
    with atomic_write(out, overwrite) as tmp:
        shutil.copyfile(staged, tmp)
        write_sidecar(sidecar, sidecar_path(out), overwrite)


class _Calibration:
    """The calibration inputs, re-read on every pass (NNCF iterates more than once)."""

    def __init__(self, paths: Sequence[str], preprocess: dict) -> None:
        self.paths, self.preprocess = list(paths), preprocess

    def __iter__(self):
        return calibration_inputs(self.paths, self.preprocess)

    def __len__(self) -> int:
        return len(self.paths)


@contextlib.contextmanager
def _quiet_nncf():
    logger = logging.getLogger('nncf')
    level = logger.level
    logger.setLevel(logging.WARNING)  # NNCF logs one INFO line per node it skips
    try:
        yield
    finally:
        logger.setLevel(level)


def quantize_graph_nncf(proto, batches: Sequence[np.ndarray], ignored: Sequence[str] = ()):
    """The QDQ copy of an in-memory ONNX model (any graph with one image input, e.g. the
    benchmark's backbone graphs): its network quantized by NNCF as :func:`quantize_openvino`
    does, calibrated on ``batches``; ``ignored`` node names stay fp32. No files, no checks."""
    nncf = require('nncf', 'nncf', PURPOSE)
    onnx = require('onnx', 'onnx', PURPOSE)
    ort = require('onnxruntime', 'onnxruntime', PURPOSE)
    net = _Network(onnx, ort, proto, network_nodes(proto.graph), batches[0])
    return net.merge(_nncf_quantize(nncf, net, list(batches), ignored))


def _nncf_quantize(nncf, net: '_Network', calibration: Sequence[np.ndarray],
                   ignored: Sequence[str]):
    from nncf.quantization.advanced_parameters import QuantizationParameters
    params = nncf.AdvancedQuantizationParameters(
        weights_quantization_params=QuantizationParameters(per_channel=True))
    with _quiet_nncf():
        return nncf.quantize(
            copy.deepcopy(net.model), nncf.Dataset(calibration, net.feed),
            target_device=nncf.TargetDevice.CPU, subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(names=list(ignored)),
            advanced_parameters=params)


# --- the network as a model of its own ---------------------------------------------------------
class _Network:
    """The network part of an end-to-end graph as an ONNX model (``model``), the fp32 graph's
    nodes that compute its inputs (:meth:`feed`), and :meth:`merge` to put a quantized copy
    back into the whole graph."""

    def __init__(self, onnx, ort, proto, network: Sequence[str], sample: np.ndarray) -> None:
        helper = onnx.helper
        self.onnx, self.proto = onnx, proto
        graph = proto.graph
        self.names = set(network)
        nodes = [node for node in graph.node if node.name in self.names]
        producer = {name: node for node in graph.node for name in node.output}
        initializers = {t.name: t for t in graph.initializer}
        inner = {name for node in nodes for name in node.output}
        constants, used, inputs = [], {}, []

        def constant(name: str) -> bool:  # an initializer, or Constant/Identity of one
            if name in initializers:
                used[name] = initializers[name]
                return True
            node = producer.get(name)
            if node is None or node.op_type not in _CONSTANT or not all(
                    constant(i) for i in node.input):
                return False
            if node not in constants:
                constants.append(node)
            return True

        for node in nodes:
            for name in node.input:
                if name and name not in inner and not constant(name) and name not in inputs:
                    inputs.append(name)
        self.constants = {node.name for node in constants}
        consumers = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                consumers[name].append(node)
        graph_outputs = {o.name for o in graph.output}
        #: the network's outputs: what the rest of the graph reads values of (Shape nodes
        #: read only the shape) ...
        self.boundary = [name for node in nodes for name in node.output
                         if name in graph_outputs or any(
                             c.name not in self.names and c.op_type != 'Shape'
                             for c in consumers[name])]
        # ... and tensors only Shape reads, where nothing in the network does (not otherwise:
        # OpenVINO 2026.4 computes wrong values after a quantized conv whose output is also
        # a model output and the input of a quantizer)
        self.outputs = [name for node in nodes for name in node.output
                        if name in self.boundary or (consumers[name] and not any(
                            c.name in self.names for c in consumers[name]))]
        self.inputs = inputs
        graph_inputs = [i.name for i in graph.input]
        self.input_name = graph_inputs[0]
        self._session = None
        if inputs != [self.input_name]:  # the fp32 graph's nodes that compute them
            needed, kept = set(inputs), []
            for node in reversed(graph.node):
                if any(name in needed for name in node.output):
                    kept.append(node)
                    needed.update(i for i in node.input if i)
            feed = helper.make_model(
                helper.make_graph(kept[::-1], 'feed', list(graph.input),
                                  [helper.make_empty_tensor_value_info(i) for i in inputs],
                                  [initializers[i] for i in needed if i in initializers]),
                opset_imports=proto.opset_import, ir_version=proto.ir_version)
            self._session = ort.InferenceSession(feed.SerializeToString(),
                                                 providers=['CPUExecutionProvider'])
        values = self.feed(sample)
        value_infos = []
        for name in inputs:  # shape tensors keep their length; feature maps: any size
            value = values[name]
            dims = (list(value.shape) if value.dtype.kind in 'iu' else
                    [f'{name}_dim{d}' for d in range(value.ndim)])
            value_infos.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), dims))
        self.model = helper.make_model(
            helper.make_graph(constants + nodes, 'network', value_infos,
                              [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None)
                               for o in self.outputs], list(used.values())),
            opset_imports=proto.opset_import, ir_version=proto.ir_version)

    def feed(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """The network's inputs for the preprocessed batch ``x``."""
        if self._session is None:
            return {self.input_name: x}
        return dict(zip(self.inputs, self._session.run(self.inputs, {self.input_name: x})))

    def merge(self, quantized):
        """The whole graph with ``quantized`` (a quantized copy of :attr:`model`) in place of
        the network; metadata and everything outside the network as in the fp32 graph."""
        full = copy.deepcopy(self.proto)
        graph = full.graph
        outside = [node for node in graph.node if node.name not in self.names]
        existing = {name for node in outside for name in node.output}
        inner = [node for node in quantized.graph.node if not (
            node.name in self.constants and all(o in existing for o in node.output))]
        read_outside = {name for node in outside for name in node.input}
        initializers = {t.name: t for t in graph.initializer}
        renamed = {}
        for tensor in quantized.graph.initializer:
            old = initializers.get(tensor.name)
            if old is not None and tensor.name in read_outside and (
                    old.SerializeToString() != tensor.SerializeToString()):
                renamed[tensor.name] = tensor.name + '_int8_network'  # e.g. a corrected bias
            initializers[renamed.get(tensor.name, tensor.name)] = copy.deepcopy(tensor)
            initializers[renamed.get(tensor.name, tensor.name)].name = renamed.get(
                tensor.name, tensor.name)
        for node in inner:
            node.input[:] = [renamed.get(name, name) for name in node.input]
        nodes = _topological(outside + inner, {i.name for i in graph.input} | set(initializers))
        read = {name for node in nodes for name in node.input}
        del graph.node[:]
        graph.node.extend(nodes)
        del graph.initializer[:]
        graph.initializer.extend(t for name, t in initializers.items() if name in read)
        produced = {name for node in nodes for name in node.output}
        kept_info = [v for v in graph.value_info if v.name in produced]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
        return full


def _topological(nodes, available: set) -> list:
    """``nodes`` in an order where each comes after the producers of its inputs (ties keep
    the given order)."""
    producer = {name: i for i, node in enumerate(nodes) for name in node.output}
    waiting = [0] * len(nodes)
    dependents = defaultdict(list)
    for i, node in enumerate(nodes):
        for name in set(node.input):
            if name and name not in available and name in producer:
                waiting[i] += 1
                dependents[producer[name]].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in dependents[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):  # pragma: no cover - a cycle: the merge is wrong
        raise QuantizeError('merging the quantized network back into the graph failed (a '
                            'cycle); please report this with the model')
    return order


# --- OpenVINO on the network (several inputs, profiling: not what the runtime's sessions do) ---
def _compile(ov, path: str, threads: int, profiling: bool = False):
    """``path`` compiled for the CPU with the runtime's session options (f32 inference
    precision forced, as ``mmrepghost_runtime.backends``; ``threads`` threads), profiling on
    request; returns (compiled model, infer request)."""
    core = ov.Core()
    config = {'INFERENCE_PRECISION_HINT': 'f32', 'INFERENCE_NUM_THREADS': threads}
    if profiling:
        config['PERF_COUNT'] = True
    compiled = core.compile_model(core.read_model(path), 'CPU', config)
    return compiled, compiled.create_infer_request()


def _run(compiled, request, feeds: Dict[str, np.ndarray], names: Sequence[str]):
    request.infer(feeds)
    found = {}
    for port in compiled.outputs:
        for name in port.get_names():
            if name in names:
                found[name] = np.array(request.get_tensor(port).data, copy=True)
    return found


# --- per-layer error ---------------------------------------------------------------------------
def _layer_probe(onnx, fp32, int8, layers: Sequence[str]):
    """The fp32 network plus, for every int8 layer of ``int8``, a clone reading the fp32
    input through the int8 graph's quantizers, with its int8 weights and its bias; outputs:
    the network's own, every layer's fp32 output and the clones' outputs."""
    probe = copy.deepcopy(fp32)
    graph = probe.graph
    known = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    known |= {name for node in graph.node for name in node.output}
    producer = {name: node for node in int8.graph.node for name in node.output}
    initializers = {t.name: t for t in int8.graph.initializer}
    brought: Dict[str, str] = {}

    def bring(name: str) -> str:
        """``name`` of the int8 graph in the probe: quantizers and constants copied, other
        tensors the fp32 graph's own."""
        if not name or name in brought:
            return brought.get(name, name)
        if name in initializers:
            tensor = copy.deepcopy(initializers[name])
            tensor.name = _PREFIX + name
            graph.initializer.append(tensor)
            new = tensor.name
        elif name in producer and producer[name].op_type in _QDQ + ('Constant', ):
            node = copy.deepcopy(producer[name])
            node.input[:] = [bring(i) for i in node.input]
            node.output[:] = [_PREFIX + o for o in node.output]
            node.name = _PREFIX + node.name
            graph.node.append(node)
            new = _PREFIX + name
        elif name in known:
            new = name
        else:
            raise KeyError(name)
        brought[name] = new
        return new

    nodes = {node.name: node for node in int8.graph.node}
    source = {node.name: node for node in fp32.graph.node}
    names = [source[layer].output[0] for layer in layers]
    for layer in int8_layers(int8.graph):
        node = copy.deepcopy(nodes[layer])
        try:
            node.input[:] = [bring(i) for i in node.input]
        except KeyError:  # an input NNCF renamed: no clone, no error figure for this layer
            continue
        node.output[:] = [_PREFIX + o for o in node.output[:1]]
        node.name = _PREFIX + layer
        graph.node.append(node)
        names.append(node.output[0])
    existing = {o.name for o in graph.output}
    for name in dict.fromkeys(names):
        if name not in existing:
            graph.output.append(onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, None))
    return probe


def _layer_errors(ov, probe_path: str, feeds, threads: int, fp32, layers: Sequence[str]):
    """({layer: (sqnr, cosine)}, {layer: output shape}, {tensor: [fp32 values per input]})."""
    compiled, request = _compile(ov, probe_path, threads)
    wanted = {name for port in compiled.outputs for name in port.get_names()}
    values: Dict[str, List[np.ndarray]] = defaultdict(list)
    for feed in feeds:
        for name, value in _run(compiled, request, feed, wanted).items():
            values[name].append(value)
    outputs = {node.name: node.output[0] for node in fp32.graph.node}
    errors, shapes = {}, {}
    for layer in layers:
        output = outputs[layer]
        if values.get(output):
            shapes[layer] = tuple(values[output][0].shape)
        clone = values.get(_PREFIX + output)
        if clone:
            reference = np.concatenate([v.ravel() for v in values[output]])
            quantized = np.concatenate([v.ravel() for v in clone])
            errors[layer] = (sqnr_db(reference, quantized), cosine(reference, quantized))
    return errors, shapes, values


# --- per-layer time ----------------------------------------------------------------------------
def _attribution(int8, layers: Sequence[str]) -> Dict[str, List[str]]:
    """{QuantizeLinear node name: the layers reading its quantized tensor}."""
    consumers = defaultdict(list)
    for node in int8.graph.node:
        for name in node.input:
            consumers[name].append(node)
    wanted = set(layers)
    return {node.name: [reader.name for dq in consumers[node.output[0]]
                        for reader in consumers[dq.output[0]] if reader.name in wanted]
            for node in int8.graph.node if node.op_type == 'QuantizeLinear'}


def _assign(entries, layers: set, quantizers: Dict[str, List[str]]):
    """Per-layer ms of profiled nodes (:class:`~mmrepghost.utils.ov_profile.NodeTime`),
    and the ms of the int8 nodes left unattributed."""
    direct: Dict[str, str] = {}
    times: Dict[str, float] = defaultdict(float)
    rest = []
    for entry in entries:
        ms = entry.ms
        name = layer = entry.node_name
        while layer and layer not in layers:  # '<onnx name>/WithoutBiases' and the like
            layer = layer.rsplit('/', 1)[0] if '/' in layer else ''
        if layer:
            direct[name] = layer
            times[layer] += ms
        else:
            rest.append((name, entry.node_type, ms))
    unattributed = 0.0
    for name, kind, ms in rest:
        if kind == 'FakeQuantize' and quantizers.get(name):
            for layer in quantizers[name]:
                times[layer] += ms / len(quantizers[name])
            continue
        if kind == 'Reorder':  # '<from>_<layout>_<layout>_<to>': into a layer's kernel
            into = [n for n in direct if name.endswith('_' + n)]
            if into:
                times[direct[max(into, key=len)]] += ms
                continue
        if kind == 'FakeQuantize' or (kind == 'Reorder' and '/sink_port' not in name):
            unattributed += ms  # (a reorder into an output is the same in fp32)
    return times, unattributed


def _profile(ov, fp32_path: str, int8_path: str, int8, layers: Sequence[str],
             feed: Dict[str, np.ndarray], threads: int, runs: int):
    """Per-layer mean ms over ``runs`` profiled inferences of the fp32 network and of two
    separately compiled int8 networks, interleaved (the order rotates), after one warm-up
    inference each: ({layer: fp32 ms}, {layer: int8 ms}, ms of the int8 quantize/reorder
    nodes not attributed to a layer, an int8 network's (compiled model, infer request)).

    OpenVINO reports means since compilation (:mod:`mmrepghost.utils.ov_profile`), so the
    means over the timed span are what can be measured. A layer's int8 time is the lower of
    the two compilations': a stall that lands on one node of a compiled model in most runs
    (seen on a loaded machine, on a different node each compilation) is not taken for a slow
    int8 layer."""
    compiled = [_compile(ov, path, threads, profiling=True)
                for path in (fp32_path, int8_path, int8_path)]
    requests = [request for _, request in compiled]
    quantizers = [{}] + [_attribution(int8, layers)] * 2
    for request in requests:
        request.infer(feed)  # warm-up
    before = [snapshot(request) for request in requests]
    for run in range(runs):
        for i in [(run + k) % len(requests) for k in range(len(requests))]:
            requests[i].infer(feed)
    assigned = [_assign(mean_times(start, snapshot(request), 1, runs), set(layers), quantizer)
                for start, request, quantizer in zip(before, requests, quantizers)]
    fp32_ms = {layer: assigned[0][0].get(layer, 0.0) for layer in layers}
    int8_ms = {layer: min(assigned[1][0].get(layer, 0.0), assigned[2][0].get(layer, 0.0))
               for layer in layers}
    unattributed = min(assigned[1][1], assigned[2][1])
    return fp32_ms, int8_ms, unattributed, compiled[1]


# --- decisions and records ---------------------------------------------------------------------
def _decide(layers, int8_now, fp32_ms, int8_ms, errors) -> Dict[str, str]:
    """{layer: why} for the int8 layers that stay fp32 (see the module doc)."""
    auto = {}
    for layer in layers:
        if layer not in int8_now:
            continue
        fp, q = fp32_ms.get(layer), int8_ms.get(layer)
        error = errors.get(layer)
        if error is not None and error[0] < AUTO_MIN_SQNR_DB:
            auto[layer] = (f'auto: too lossy in int8 (SQNR alone {error[0]:.1f} dB < '
                           f'{AUTO_MIN_SQNR_DB:g} dB)')
        elif fp and q and _slower(fp, q):
            auto[layer] = (f'auto: slower in int8 (mean {q:.3f} ms vs {fp:.3f} ms fp32, '
                           'with its quantize/reorder nodes)')
    return auto


def _slower(fp32_ms: float, int8_ms: float) -> bool:
    return int8_ms > fp32_ms * AUTO_SLOWER and int8_ms - fp32_ms >= AUTO_MIN_GAIN_MS


def _records(graph, layers, final_int8, measured_int8, user, auto, shapes, fp32_ms, int8_ms,
             errors, auto_exclude) -> List[LayerRecord]:
    nodes = {node.name: node for node in graph.node}
    records = []
    for layer in layers:
        if layer in final_int8:
            precision, reason = 'int8', ('auto: kept int8 (not slower, SQNR alone at least '
                                         f'{AUTO_MIN_SQNR_DB:g} dB)' if auto_exclude else '')
        elif layer in user:
            precision, reason = 'fp32', f'--exclude {user[layer]!r}'
        elif layer in auto:
            precision, reason = 'fp32', auto[layer]
        else:
            precision, reason = 'fp32', ("NNCF's OpenVINO CPU rules left it fp32 (its ignored "
                                         'patterns, e.g. squeeze-excitation convs)')
        error = errors.get(layer)
        records.append(LayerRecord(
            name=layer, kind=onnx_layer_kind(graph, nodes[layer], shapes.get(layer) or ()),
            precision=precision, reason=reason, fp32_ms=_round(fp32_ms.get(layer)),
            int8_ms=_round(int8_ms.get(layer)) if layer in measured_int8 else None,
            sqnr_db=_round(error[0], 2) if error is not None else None,
            cosine=_round(error[1], 6) if error is not None else None))
    return records


def _round(value, digits: int = 4):
    if value is None or not np.isfinite(value):
        return value
    return round(float(value), digits)


# --- outputs and latency -----------------------------------------------------------------------
def _compare_outputs(final_compiled, feeds, fp32_values, net: _Network, fp32_session,
                     int8_session, inputs, sidecar) -> Dict:
    """Raw network outputs int8 vs fp32 (both OpenVINO), and the final ones."""
    compiled, request = final_compiled
    int8_values: Dict[str, List[np.ndarray]] = defaultdict(list)
    for feed in feeds:
        for name, value in _run(compiled, request, feed, net.boundary).items():
            int8_values[name].append(value)
    per_tensor = {}
    for name in net.boundary:
        a = np.concatenate([v.ravel() for v in fp32_values[name]])
        b = np.concatenate([v.ravel() for v in int8_values[name]])
        per_tensor[name] = (cosine(a, b), sqnr_db(a, b))
    worst = min(per_tensor, key=lambda n: per_tensor[n][1])
    result = {
        'compared': f'raw network outputs ({len(net.boundary)} tensors the decoding/softmax '
                    'reads), OpenVINO int8 vs fp32',
        'images': len(feeds),
        'cosine': _round(min(c for c, _ in per_tensor.values()), 6),
        'sqnr_db': _round(min(s for _, s in per_tensor.values()), 2),
        'worst_tensor': worst,
    }
    finals = [[session.run(x) for x in inputs] for session in (fp32_session, int8_session)]
    if sidecar.task == 'classification':
        name = sidecar.outputs[0]
        a = np.concatenate([o[name] for o in finals[0]])
        b = np.concatenate([o[name] for o in finals[1]])
        result['top1_agreement'] = _round(float(np.mean(a.argmax(-1) == b.argmax(-1))), 4)
    else:
        result['dets_found'] = _detections_found(*finals)
    return result


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:4] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:4] - b[:, :2], 0, None), axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def _detections_found(fp32_outputs, int8_outputs) -> Optional[float]:
    """Share of fp32 detections (score >= DET_SCORE_THR) with an int8 one of the same label
    and IoU >= 0.5 (None when fp32 has none)."""
    found = total = 0
    for a_out, b_out in zip(fp32_outputs, int8_outputs):
        for dets_a, labels_a, dets_b, labels_b in zip(a_out['dets'], a_out['labels'],
                                                      b_out['dets'], b_out['labels']):
            keep_a = (labels_a >= 0) & (dets_a[:, 4] >= DET_SCORE_THR)
            keep_b = labels_b >= 0
            a, la = dets_a[keep_a], labels_a[keep_a]
            b, lb = dets_b[keep_b], labels_b[keep_b]
            total += len(a)
            if len(a) and len(b):
                iou = _box_iou(a, b) * (la[:, None] == lb[None, :])
                found += int((iou.max(axis=1) >= 0.5).sum())
    return _round(found / total, 4) if total else None


def _latency(sessions: Dict, x: np.ndarray, threads: int, runs: int) -> Dict:
    """Median ms of ``sessions`` ({key: session}) timed interleaved in one loop
    (:func:`mmrepghost.utils.timing.measure_interleaved`, one warm-up round)."""
    timed = measure_interleaved({key: (lambda s=session: s.run(x))
                                 for key, session in sessions.items()}, runs, warmup=1)
    medians = {key: round(lat.median_ms, 3) for key, lat in timed.items()}
    result = dict(backend='openvino', fp32_ms=medians.pop('fp32_ms'),
                  int8_ms=medians.pop('int8_ms'))
    result['ratio'] = round(result['int8_ms'] / result['fp32_ms'], 3)
    result.update(medians)
    result.update(threads=threads, batch=1, input_shape=list(x.shape), runs=runs)
    return result
