"""INT8 for onnxruntime: static QDQ quantization of an exported ONNX file, latency-aware.

The input is an ONNX file of the deployment tools with its sidecar (``tools/export_onnx.py
--end2end``: classifiers and detectors, decoding and NMS in the graph); the output is the same
kind of file (``OUT`` + its sidecar with a new export id), so ``mmrepghost_runtime``,
``tools/deploy_infer.py`` and ``tools/deploy_test.py`` run it unchanged.

How:

1. **Calibration** (:func:`calibrate`): onnxruntime's MinMax calibrator over the calibration
   images, one at a time. It adds a ReduceMin/ReduceMax pair per tensor and keeps two scalars
   per tensor and image, so memory does not grow with the activations (the entropy and
   percentile calibrators keep every activation and are not used).
2. **Quantization** (:func:`quantize_graph`): QDQ format, uint8 activations (asymmetric) and
   int8 weights per output channel -- the fast pair on x86 VNNI CPUs (int8 activations make
   onnxruntime insert layout transposes and run about 2x slower). Only the network is
   quantized (:func:`~.onnx_graph.network_nodes`); box decoding, top-k, NMS and the padding
   reader stay fp32. A feature operator is quantized only when everything feeding it is, so an
   fp32 layer does not leave Quantize/Dequantize pairs around its activation.
3. **Per-layer measurements** (:func:`probe_layers`): every Conv alone, cut out of the graph
   with its fused activation, in fp32 and in int8 with the calibrated ranges: the SQNR of its
   int8 output on the fp32 activations of a few calibration images (its own error, not the
   error accumulated before it), and, for ``auto_exclude``, the time of its kernel in
   onnxruntime's profiler (``Conv``/``FusedConv`` fp32 vs ``QLinearConv``, median of
   interleaved runs, Quantize/Dequantize and layout transposes at the cut not counted), plus
   the time of those boundary operators.
4. **Decisions** (:func:`decide`): ``--exclude`` patterns first; with ``auto_exclude``, a
   layer whose SQNR alone is below ``min_sqnr`` dB stays fp32, then candidate plans are built
   (:func:`candidate_plans`): a dynamic programme over the measured kernel times, where each
   change of precision costs the boundary operators measured at that layer (a lone int8
   layer between fp32 ones pays a Quantize, a Dequantize, layout transposes and reorders),
   every layer int8, and the first k layers fp32 for a few k. Each plan is quantized and the
   whole model timed, interleaved with the fp32 model: the fastest plan wins (per-layer
   estimates miss what only the whole graph shows, such as layout changes and fused adds).
5. The whole fp32 and int8 graphs are then timed interleaved (the number that counts), and
   the network's outputs compared (classifier logits; a detector's head maps).
"""
import copy
import os
import os.path as osp
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from mmrepghost_runtime.files import atomic_write
from mmrepghost_runtime.sidecar import load_sidecar, sidecar_path, write_sidecar
from ...utils.ort_profile import kernel_times
from ...utils.timing import measure_interleaved
from .common import (LayerRecord, QuantizeError, QuantizeReport, calibration_inputs, cosine,
                     match_patterns, require, sqnr_db)
from .onnx_graph import (WEIGHTED_OPS, check_output_pair, graph_edges, network_nodes,
                         not_deployed, onnx_layer_kind, set_metadata)

__all__ = ['MIN_SQNR_DB', 'Quantization', 'quantize_model', 'layer_records', 'compare_outputs',
           'calibrate', 'quantize_graph', 'quantize_every_layer', 'quantized_nodes',
           'probe_layers', 'decide', 'quantize_onnxruntime']

#: auto-exclude: a layer whose int8 output has a lower SQNR than this stays fp32
MIN_SQNR_DB = 20.0
_ACTIVATIONS = ('Relu', 'Clip', 'LeakyRelu', 'HardSwish')
_PURPOSE = 'INT8 quantization with onnxruntime'


def _ort():
    return require('onnxruntime', 'onnxruntime', _PURPOSE)


def _session(model, threads: int, profile_prefix: Optional[str] = None):
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    source = model.SerializeToString() if not isinstance(model, str) else model
    return ort.InferenceSession(source, options, providers=['CPUExecutionProvider'])


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over a generator of batches."""

    def __init__(self, input_name: str, batches: Iterable[np.ndarray]) -> None:
        self.input_name, self.batches = input_name, iter(batches)

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}


def calibrate(model, input_name: str, batches: Iterable[np.ndarray]):
    """onnxruntime's MinMax ranges (``TensorsData``) of every tensor of ``model``."""
    _ort()
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
    with tempfile.TemporaryDirectory(prefix='mmrepghost-calib-') as tmp:
        path = osp.join(tmp, 'model.onnx')
        with open(path, 'wb') as f:
            f.write(model.SerializeToString())
        calibrator = create_calibrator(path, augmented_model_path=osp.join(tmp, 'aug.onnx'),
                                       calibrate_method=CalibrationMethod.MinMax)
        calibrator.collect_data(_Reader(input_name, batches))
        ranges = calibrator.compute_data()
        del calibrator
    return ranges


def quantized_nodes(graph, network: Sequence[str], fp32: Iterable[str]) -> List[str]:
    """The network nodes to quantize when the weighted nodes ``fp32`` stay fp32.

    A weighted node is quantized unless it is in ``fp32``; a feature operator only when every
    input produced inside the network comes from a quantized node (in graph order, which is
    topological for exported graphs).
    """
    fp32, network = set(fp32), set(network)
    producer, _ = graph_edges(graph)
    chosen: Dict[str, bool] = {}
    for node in graph.node:
        if node.name not in network:
            continue
        if node.op_type in WEIGHTED_OPS:
            chosen[node.name] = node.name not in fp32
            continue
        inside = [producer[i].name for i in node.input
                  if i in producer and producer[i].name in network]
        chosen[node.name] = bool(inside) and all(chosen.get(n, False) for n in inside)
    return [name for name, yes in chosen.items() if yes]


def quantize_graph(model, ranges, nodes: Sequence[str]):
    """The QDQ model (uint8 activations, per-channel int8 weights) quantizing ``nodes``."""
    _ort()
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import QuantType
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnx import shape_inference
    if not nodes:
        return copy.deepcopy(model)
    inferred = shape_inference.infer_shapes(copy.deepcopy(model))
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))  # all it can (as ORT's default)
    quantizer = QDQQuantizer(inferred, True, False, QuantType.QInt8, QuantType.QUInt8, ranges,
                             list(nodes), [], op_types, {})
    quantizer.quantize_model()
    return quantizer.model.model


def quantize_every_layer(model, input_name: str, batches: Iterable[np.ndarray]):
    """The QDQ copy of an in-memory deployed graph with every layer of its network int8,
    calibrated on ``batches``, without the per-layer probes of :func:`quantize_model` (for
    benchmarks of raw graphs)."""
    network = network_nodes(model.graph)
    ranges = calibrate(model, input_name, batches)
    return quantize_graph(model, ranges, quantized_nodes(model.graph, network, ()))


# -- per-layer probes ------------------------------------------------------------------------
def _initializers(graph) -> Dict[str, object]:
    return {t.name: t for t in graph.initializer}


def _fused_output(node, consumers, network) -> Tuple[str, Optional[object]]:
    """A conv's output tensor after its activation (if that is the conv's only consumer)."""
    users = consumers.get(node.output[0], [])
    if len(users) == 1 and users[0].op_type in _ACTIVATIONS and users[0].name in network:
        return users[0].output[0], users[0]
    return node.output[0], None


def _layer_model(model, node, activation, out_name: str, in_shape):
    """The conv ``node`` (+ ``activation``) alone as a model: input -> output tensors."""
    from onnx import TensorProto, helper
    graph = model.graph
    inits = _initializers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    nodes = [node] + ([activation] if activation is not None else [])
    needed, extra = [], []

    def constant(name) -> bool:  # an initializer, or Constant/Identity nodes of one
        if name in inits:
            needed.append(name)
            return True
        source = producer.get(name)
        if source is None or source.op_type not in ('Constant', 'Identity') or not all(
                constant(i) for i in source.input):
            return False
        if source not in extra:
            extra.append(source)  # after what it reads (appended by the recursion)
        return True

    if not all(constant(i) for m in nodes for i in m.input[1:] if i):
        return None
    layer = helper.make_graph(
        extra + [copy.deepcopy(n) for n in nodes], node.name,
        [helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT,
                                       ['n', int(in_shape[1]), 'h', 'w'])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
        [inits[i] for i in dict.fromkeys(needed)])
    result = helper.make_model(layer, opset_imports=model.opset_import)
    result.ir_version = model.ir_version
    return result


_FP32_KERNELS = ('Conv', 'FusedConv')
_INT8_KERNELS = ('QLinearConv', )


def _profile_times(path: str) -> Dict[str, List[float]]:
    """``{op type: [ms per event]}`` of a profile file's kernel events."""
    times: Dict[str, List[float]] = defaultdict(list)
    for op, ms in kernel_times(path).values():
        times[op].extend(ms)
    return times


def _median_sum(times: Dict[str, List[float]], ops: Sequence[str], runs: int) -> float:
    """Median over runs of the summed time of ``ops`` (events are in run order)."""
    per_run = np.zeros(runs)
    for op in ops:
        values = times.get(op, [])
        if values and len(values) % runs == 0:
            per_run += np.asarray(values).reshape(runs, -1).sum(1)
    return float(np.median(per_run))


def probe_layers(model, ranges, batches: Sequence[np.ndarray], input_name: str,
                 layers: Sequence[str], threads: int = 1, runs: int = 0,
                 log: Callable[[str], None] = print) -> Dict[str, dict]:
    """Per-layer SQNR (and, with ``runs``, kernel times) of each Conv in ``layers``.

    ``batches``: a few calibration inputs whose fp32 activations feed the layers. Returns
    ``{name: dict(kind, sqnr_db, cosine, fp32_ms, int8_ms, boundary_ms)}``; a layer that cannot
    be cut out alone (a weight computed in the graph) gets only its kind.
    """
    graph = model.graph
    network = set(network_nodes(graph))
    producer, consumers = graph_edges(graph)
    by_name = {n.name: n for n in graph.node}
    wanted = {}
    for name in layers:
        node = by_name[name]
        out_name, activation = _fused_output(node, consumers, network)
        wanted[name] = (node, activation, out_name)
    # fp32 activations at every layer's input, for a few images
    probe = copy.deepcopy(model)
    existing = {o.name for o in probe.graph.output}
    inputs_needed = list(dict.fromkeys(node.input[0] for node, _, _ in wanted.values()))
    from onnx import helper
    for name in inputs_needed:
        if name not in existing and name != input_name:
            probe.graph.output.append(helper.make_tensor_value_info(name, 1, None))
    session = _session(probe, threads)
    names = [o.name for o in session.get_outputs()]
    activations: Dict[str, List[np.ndarray]] = defaultdict(list)
    for batch in batches:
        values = dict(zip(names, session.run(None, {input_name: batch})))
        values[input_name] = batch
        for name in inputs_needed:
            activations[name].append(values[name])
    del session
    results: Dict[str, dict] = {}
    tmp = tempfile.mkdtemp(prefix='mmrepghost-probe-')
    try:
        for index, (name, (node, activation, out_name)) in enumerate(wanted.items()):
            samples = activations[node.input[0]]
            result = dict(kind=onnx_layer_kind(graph, node))
            results[name] = result
            fp32 = _layer_model(model, node, activation, out_name, samples[0].shape)
            if fp32 is None or node.op_type != 'Conv':
                continue
            quantize = [node.name] + ([activation.name] if activation is not None else [])
            int8 = quantize_graph(fp32, ranges, quantize)
            reference, quantized = _session(fp32, threads), _session(int8, threads)
            expected = [reference.run(None, {node.input[0]: x})[0] for x in samples]
            result['kind'] = onnx_layer_kind(graph, node, expected[0].shape)
            got = [quantized.run(None, {node.input[0]: x})[0] for x in samples]
            result['sqnr_db'] = sqnr_db(np.concatenate([e.ravel() for e in expected]),
                                        np.concatenate([g.ravel() for g in got]))
            result['cosine'] = cosine(np.concatenate([e.ravel() for e in expected]),
                                      np.concatenate([g.ravel() for g in got]))
            if runs:
                result.update(_time_layer(fp32, int8, samples[0], node.input[0], threads,
                                          runs, osp.join(tmp, str(index))))
            if log and (index + 1) % 20 == 0:
                log(f'  probed {index + 1}/{len(wanted)} layers')
    finally:
        for entry in os.listdir(tmp):
            os.remove(osp.join(tmp, entry))
        os.rmdir(tmp)
    return results


def _time_layer(fp32, int8, sample, input_name, threads, runs, prefix) -> dict:
    sessions = [_session(fp32, threads, prefix + 'f'), _session(int8, threads, prefix + 'q')]
    for _ in range(3):  # warm-up, also profiled: dropped below
        for s in sessions:
            s.run(None, {input_name: sample})
    for _ in range(runs):
        for s in sessions:
            s.run(None, {input_name: sample})
    files = [s.end_profiling() for s in sessions]
    total = runs + 3
    times = [_profile_times(f) for f in files]
    for f in files:
        os.remove(f)
    for t in times:  # drop the warm-up runs
        for op, values in t.items():
            per = len(values) // total
            t[op] = values[3 * per:]
    # what a change of precision costs at this layer: the int8 side's quantize, dequantize and
    # layout transposes, and the fp32 side's blocked-layout reorders
    fp32_other = [op for op in times[0] if op not in _FP32_KERNELS]
    int8_other = [op for op in times[1] if op not in _INT8_KERNELS]
    return dict(fp32_ms=_median_sum(times[0], _FP32_KERNELS, runs),
                int8_ms=_median_sum(times[1], _INT8_KERNELS, runs),
                boundary_ms=(_median_sum(times[1], int8_other, runs)
                             + _median_sum(times[0], fp32_other, runs)))


# -- decisions -------------------------------------------------------------------------------
def _plan(layers: Sequence[str], probes: Dict[str, dict], forced: Iterable[str]) -> Dict[str, bool]:
    """``{layer: int8?}`` minimizing the summed measured time along the graph order.

    Each layer costs its fp32 or int8 kernel time; every change of precision between two
    consecutive layers (and an int8 first or last layer, as the graph's input and outputs are
    fp32) costs half the boundary operators measured around that layer alone (Quantize or
    Dequantize and a layout transpose). A dynamic programme over the two states gives the
    cheapest assignment; ``forced`` layers are fp32. Layers without timings cost nothing in
    either precision (they follow their neighbours).
    """
    forced = set(forced)
    inf = float('inf')

    def cost(name, int8):
        p = probes.get(name, {})
        if int8 and name in forced:
            return inf
        key = 'int8_ms' if int8 else 'fp32_ms'
        return p.get(key) or 0.0

    def switch(name):
        return (probes.get(name, {}).get('boundary_ms') or 0.0) / 2

    # best[state] = (total, choices); state False = fp32, True = int8; the input is fp32
    best = {False: (0.0, []), True: (inf, [])}
    for name in layers:
        new = {}
        for state in (False, True):
            options = [(best[prev][0] + cost(name, state)
                        + (switch(name) if prev != state else 0.0), best[prev][1])
                       for prev in (False, True)]
            total, path = min(options, key=lambda o: o[0])
            new[state] = (total, path + [state])
        best = new
    last = layers[-1] if layers else None
    final = min(((best[False][0], best[False][1]),
                 (best[True][0] + (switch(last) if last else 0.0), best[True][1])),
                key=lambda o: o[0])[1]
    return dict(zip(layers, final))


def candidate_plans(weighted: Sequence[str], probes: Dict[str, dict],
                    forced: Iterable[str], prefixes: int = 8) -> Dict[str, Dict[str, bool]]:
    """Plans (``{layer: int8?}``) worth timing whole; ``forced`` layers are fp32 in all.

    ``'per-layer programme'`` (:func:`_plan`), ``'every layer'`` and ``'first k fp32'`` for
    ``prefixes`` evenly spaced k (early layers, at the highest resolution, are where int8
    depthwise kernels lose most; a prefix pays one precision change).
    """
    forced = set(forced)
    plans = {'every layer': {n: n not in forced for n in weighted}}
    if any(probes.get(n, {}).get('int8_ms') is not None for n in weighted):
        plans['per-layer programme'] = _plan(weighted, probes, forced)
    count = len(weighted)
    for step in range(1, prefixes):
        k = round(step * count / prefixes)
        plans[f'first {k} fp32'] = {n: i >= k and n not in forced
                                    for i, n in enumerate(weighted)}
    return plans


def decide(network: Sequence[str], weighted: Sequence[str], probes: Dict[str, dict],
           excluded: Dict[str, str], auto: bool, min_sqnr: float = MIN_SQNR_DB,
           timed: Optional[Callable[[Dict[str, Dict[str, bool]]], Dict[str, float]]] = None
           ) -> Tuple[Dict[str, str], Dict[str, float]]:
    """``({weighted layer kept fp32: why}, {plan: measured ms})`` (see the module doc).

    ``timed(plans) -> {plan: ms}`` measures whole models (it may add a reference such as
    ``'all fp32'``); with ``auto``, the fastest of :func:`candidate_plans` is taken (without
    ``timed``: the per-layer programme's plan).
    """
    fp32 = {name: f'--exclude {pattern!r}' for name, pattern in excluded.items()}
    if not auto:
        return fp32, {}
    for name in weighted:
        sqnr = probes.get(name, {}).get('sqnr_db')
        if name not in fp32 and sqnr is not None and sqnr < min_sqnr:
            fp32[name] = f'auto: SQNR {sqnr:.1f} dB < {min_sqnr:g} dB'
    plans = candidate_plans(weighted, probes, fp32)
    if timed is None:
        times = {}
        chosen = 'per-layer programme' if 'per-layer programme' in plans else 'every layer'
    else:
        times = timed(plans)
        chosen = min(plans, key=times.get)
    for name in weighted:
        if plans[chosen][name] or name in fp32:
            continue
        p = probes.get(name, {})
        kernel = (f'; int8 kernel {p["int8_ms"] / max(p["fp32_ms"], 1e-9):.2f}x fp32 alone'
                  if p.get('int8_ms') is not None else '')
        fp32[name] = f'auto: fp32 in the fastest plan ({chosen}){kernel}'
    return fp32, times


# -- whole models ----------------------------------------------------------------------------
def _head_outputs(graph, network: Sequence[str]) -> List[str]:
    """The network's final tensors: outputs of network nodes read outside the network."""
    network = set(network)
    _, consumers = graph_edges(graph)
    graph_outputs = {o.name for o in graph.output}
    by_name = {n.name: n for n in graph.node}
    heads = []
    for name in network:
        for out in by_name[name].output:
            users = consumers.get(out, [])
            if out in graph_outputs or any(u.name not in network for u in users):
                heads.append(out)
    order = {n.name: i for i, n in enumerate(graph.node)}
    producer, _ = graph_edges(graph)
    return sorted(set(heads), key=lambda t: order[producer[t].name])


def _with_outputs(model, names: Sequence[str]):
    from onnx import helper
    result = copy.deepcopy(model)
    present = {o.name for o in result.graph.output}
    for name in names:
        if name not in present:
            result.graph.output.append(helper.make_tensor_value_info(name, 1, None))
    return result


@dataclass
class Quantization:
    """What :func:`quantize_model` decided and built."""
    model: object  # the QDQ ModelProto
    ranges: object  # onnxruntime's TensorsData
    network: List[str]  # the network's node names
    weighted: List[str]  # its Conv/Gemm/MatMul nodes
    probes: Dict[str, dict]  # per-layer measurements (probe_layers)
    fp32: Dict[str, str]  # weighted layers kept fp32 -> why
    nodes: List[str]  # the nodes quantized
    plan_ms: Dict[str, float]  # --auto-exclude: whole-model ms of each candidate plan


def quantize_model(model, input_name: str, calib_batches: Iterable[np.ndarray],
                   probe_batches: Sequence[np.ndarray], exclude: Sequence[str] = (),
                   auto_exclude: bool = False, threads: int = 1, runs: int = 20,
                   min_sqnr: float = MIN_SQNR_DB, log: Callable[[str], None] = print,
                   name: str = 'the model') -> Quantization:
    """Calibrate, measure, decide and quantize an in-memory deployed ONNX model.

    ``calib_batches``: the calibration inputs (an iterable, consumed once); ``probe_batches``:
    a few inputs for the per-layer measurements. ``QuantizeError`` for a model with
    BatchNormalization, without weighted layers, or an ``exclude`` pattern matching nothing.
    """
    trained = not_deployed(model.graph)
    if trained:
        raise QuantizeError(f'{name} is not a deployed model: it has {len(trained)} '
                            f'BatchNormalization node(s) (e.g. {trained[0]!r}); export the '
                            're-parameterized network (tools/export_onnx.py fuses a training '
                            'checkpoint) and quantize that')
    network = network_nodes(model.graph)
    inside = set(network)
    weighted = [n.name for n in model.graph.node if n.name in inside
                and n.op_type in WEIGHTED_OPS]
    if not weighted:
        raise QuantizeError(f'{name} has no Conv/Gemm/MatMul layer to quantize')
    excluded = match_patterns(weighted, exclude, 'layers (ONNX node names)')
    ranges = calibrate(model, input_name, calib_batches)
    log(f'measuring {len(weighted)} layers alone (SQNR'
        + (f', kernel times x{runs})' if auto_exclude else ')') + ' ...')
    probes = probe_layers(model, ranges, probe_batches, input_name, weighted, threads,
                          runs if auto_exclude else 0, log)
    feed = {input_name: probe_batches[0]}

    def timed(plans):
        log(f'timing {len(plans)} candidate plans, whole model x{runs} ...')
        sessions = {'all fp32': _session(model, threads)}
        for label, plan in plans.items():
            chosen = quantized_nodes(model.graph, network,
                                     [n for n in weighted if not plan[n]])
            sessions[label] = _session(quantize_graph(model, ranges, chosen), threads)
        times = measure_interleaved({label: (lambda s=s: s.run(None, feed))
                                     for label, s in sessions.items()}, runs, warmup=2)
        return {label: lat.median_ms for label, lat in times.items()}

    fp32, plan_ms = decide(network, weighted, probes, excluded, auto_exclude, min_sqnr,
                           timed if auto_exclude else None)
    nodes = quantized_nodes(model.graph, network, fp32)
    return Quantization(quantize_graph(model, ranges, nodes), ranges, network, weighted,
                        probes, fp32, nodes, plan_ms)


def layer_records(result: Quantization) -> List[LayerRecord]:
    """One :class:`LayerRecord` per weighted layer, in graph order."""
    records = []
    for name in result.weighted:
        p = result.probes.get(name, {})
        records.append(LayerRecord(
            name=name, kind=p.get('kind', ''),
            precision='fp32' if name in result.fp32 else 'int8',
            reason=result.fp32.get(name, ''), fp32_ms=p.get('fp32_ms'),
            int8_ms=p.get('int8_ms'), sqnr_db=p.get('sqnr_db'), cosine=p.get('cosine')))
    return records


def compare_outputs(model, result: Quantization, input_name: str,
                    samples: Sequence[np.ndarray], threads: int = 1) -> dict:
    """Cosine and SQNR of the network's final tensors (logits, head maps), int8 vs fp32."""
    heads = _head_outputs(model.graph, result.network)
    reference = _session(_with_outputs(model, heads), threads)
    quantized = _session(quantize_graph(_with_outputs(model, heads), result.ranges,
                                        result.nodes), threads)
    expected = [reference.run(heads, {input_name: x}) for x in samples]
    got = [quantized.run(heads, {input_name: x}) for x in samples]
    flat = [np.concatenate([t.ravel() for r in rs for t in r]) for rs in (expected, got)]
    return dict(compared=f'{len(heads)} network output(s) on {len(samples)} calibration '
                'images', cosine=cosine(*flat), sqnr_db=sqnr_db(*flat))


def quantize_onnxruntime(model_path: str, out: str, calib_paths: Sequence[str],
                         exclude: Sequence[str] = (), auto_exclude: bool = False,
                         threads: int = 1, runs: int = 20, overwrite: bool = False,
                         log: Callable[[str], None] = print, probe_images: int = 4,
                         min_sqnr: float = MIN_SQNR_DB,
                         config: str = '') -> QuantizeReport:
    """Quantize the exported ``model_path`` (with its sidecar) into ``out`` (+ its sidecar).

    See the module doc. ``runs``: interleaved runs for the whole-model latency (and, with
    ``auto_exclude``, for each layer's kernel times). Nothing is written on an error; OUT and
    its sidecar are written atomically, the report by the caller (:meth:`QuantizeReport.write`).
    """
    onnx = require('onnx', 'onnx', _PURPOSE)
    _ort()
    model_path, out = str(model_path), str(out)
    check_output_pair(model_path, out, overwrite, 'onnxruntime')
    sidecar = load_sidecar(model_path)
    model = onnx.load(model_path)
    preprocess = sidecar.preprocess.to_dict()
    input_name = sidecar.input
    log(f'calibrating on {len(calib_paths)} train images (MinMax) ...')
    samples = list(calibration_inputs(calib_paths[:probe_images], preprocess))
    start = time.perf_counter()
    result = quantize_model(model, input_name, calibration_inputs(calib_paths, preprocess),
                            samples, exclude, auto_exclude, threads, runs, min_sqnr, log,
                            name=model_path)
    log(f'quantized in {time.perf_counter() - start:.1f} s')
    quantized = result.model

    export_id = uuid.uuid4().hex
    set_metadata(quantized, {
        'mmrepghost.export_id': export_id,
        'mmrepghost.quantization': 'onnxruntime QDQ, u8 activations, s8 per-channel weights'})
    new_sidecar = dict(sidecar.to_dict(), export_id=export_id)

    # whole-model comparison and latency, before writing anything
    outputs = compare_outputs(model, result, input_name, samples, threads)
    feed = {input_name: samples[0]}
    sessions = [_session(model, threads), _session(quantized, threads)]
    timed = measure_interleaved({precision: (lambda s=s: s.run(None, feed))
                                 for precision, s in zip(('fp32', 'int8'), sessions)}, runs)
    fp32_ms, int8_ms = timed['fp32'].median_ms, timed['int8'].median_ms
    latency = dict(runtime='onnxruntime', threads=threads, batch=1,
                   shape='x'.join(map(str, samples[0].shape[2:])), runs=runs,
                   fp32_ms=fp32_ms, int8_ms=int8_ms, ratio=int8_ms / fp32_ms)

    with atomic_write(out, overwrite) as tmp:
        onnx.save(quantized, tmp)
        write_sidecar(new_sidecar, sidecar_path(out), overwrite=overwrite)
    layers = layer_records(result)
    notes = []
    if not auto_exclude:
        notes.append('per-layer kernel times are measured with --auto-exclude only')
    else:
        notes.append('whole-model ms of the plans tried: ' + ', '.join(
            f'{label} {ms:.2f}' for label, ms in sorted(result.plan_ms.items(),
                                                        key=lambda item: item[1])))
    return QuantizeReport(
        backend='onnxruntime', model=model_path, out=out, config=config,
        calibration=dict(split='train', images=len(calib_paths), method='MinMax'),
        layers=layers, latency=latency, outputs=outputs, notes=notes)
