#!/usr/bin/env python
"""Where deployed RepGhostNet 1.0x spends its CPU time, against MobileNetV4-conv-small and
GhostNet 1.0x, and which function-preserving implementation choices move it.

    python tools/benchmark_profile.py [--out-dir work_dirs/benchmark_profile] [--runs 30]
        [--quick]

Three networks, random weights, 224x224, one thread: the deployed RepGhostNet 1.0x classifier
(``reparameterize_model``), timm's ``mobilenetv4_conv_small`` (73.8% ImageNet top-1 in timm's
results, against our 74.2%) and ``ghostnet_100`` (74.0%). Everything is measured in one run,
so the ratios are the result; milliseconds depend on the machine.

* ``latency``: every variant of every network timed interleaved
  (``mmrepghost.utils.timing.measure_interleaved``; onnxruntime and OpenVINO in one
  round-robin, PyTorch eager in another), batch 1 and 8. The variants change the
  implementation, not the function (each one's outputs are checked against onnxruntime's
  default session, 1e-4 of the output scale, before anything is timed): onnxruntime at
  ``ORT_ENABLE_ALL`` (the default: the NCHWc layout transformer), ``ORT_ENABLE_EXTENDED`` and
  ``ORT_ENABLE_BASIC`` on the plain dynamic-shape export (``export_onnx(annotate=False)``,
  what ``torch.onnx.export`` writes), with intra-op spinning on, on a static-shape export (no
  dynamic axes), with the symbolic shapes recorded (``export_onnx``'s default), with conv
  channels zero-padded to multiples of 16 (``export_onnx(pad_channels_to=16)``: where the
  channels do not reach a Concat, so only GhostNet's SE convs), and both; OpenVINO with the
  input reshaped to a static shape (what ``tools/benchmark_latency.py`` times), with the
  dynamic one, and padded; PyTorch eager with NCHW and with channels-last weights. Per
  variant: the ratios of ours to GhostNet 1.0x and to MobileNetV4-conv-small, and ours'
  achieved GFLOP/s against one core's peak, measured (``benchmark_latency.peak_probe`` in the
  same round-robin) and nominal (``single_core_peak_gflops``).
* ``profile``: per-operator time, batch 1, in onnxruntime (session profiler, at ``ORT_ENABLE_ALL``
  and ``ORT_ENABLE_EXTENDED``) and OpenVINO (``PERF_COUNT``), of the three networks and of ours'
  static-shape and padded variants: onnxruntime's median over the profiled runs, OpenVINO's mean
  (its profiling info holds each node's mean since compilation, read before and after the timed
  runs), grouped by the kind of layer the executed kernel computes: pointwise (1x1) conv, depthwise
  conv, dense kxk conv, SE block (pool, its two convs, gate and multiply), FC head (the classifier's
  pool, Gemm and 1x1 convs on 1x1 maps), elementwise (Add, Concat, Slice, unfused activations), and
  layout (onnxruntime's ReorderInput / ReorderOutput / Reshape of the NCHWc transformer, OpenVINO's
  Reorder). A kernel is mapped to the ONNX node it computes by its name (onnxruntime: the node's or
  its output tensor's name, ``_nchwc`` stripped; OpenVINO: the node's name up to a ``/`` suffix);
  activations and adds the runtimes fuse into a conv count with that conv. Per kind: the FLOPs of
  its ONNX nodes (after ``onnx.shape_inference`` at the static input shape: Conv 2*Cout*Hout*Wout*
  Cin/groups*kH*kW, Gemm/MatMul 2*M*N*K, one per output element of elementwise ops), the achieved
  GFLOP/s and share of the peak, the bytes moved (rough, fp32: input and output activations plus
  weights of each node; activations fused into a conv not counted) and the arithmetic intensity, set
  against a measured ridge point: the peak over the bandwidth of an in-cache elementwise add (numpy,
  one thread), so a kind below the ridge is memory-bound. Per depthwise conv: channels, whether a
  multiple of 16 (the fp32 lanes of AVX-512, which the NCHWc layout pads to), its time and GFLOP/s
  in each runtime.

Writes ``results.md`` (the tables and a "why" list computed from them) and ``results.csv``
into ``--out-dir``. ``--quick`` (for tests) runs 5 runs at 64x64, batch 1 only.
"""
import copy
import os
import os.path as osp
import statistics
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from benchmark_latency import (PEERS, TOP1 as PUBLISHED_TOP1, benchmark_parser,  # noqa: E402
                               build_classifier, calibrate_bn_, check_close as _close,
                               openvino_config, openvino_core, openvino_runner, ort_session,
                               parse_benchmark_args, peak_probe, single_core_peak_gflops)
from mmrepghost.deploy import reparameterize_model  # noqa: E402
from mmrepghost.deploy.onnx import DEFAULT_OPSETS, RawOutputs, export_onnx  # noqa: E402
from mmrepghost.deploy.onnx_info import (node_attribute, static_shapes,  # noqa: E402
                                         tensor_shapes)
from mmrepghost.deploy.quantize.onnx_graph import graph_edges  # noqa: E402
from mmrepghost.utils.ort_profile import kernel_times  # noqa: E402
from mmrepghost.utils.ov_profile import mean_times, snapshot  # noqa: E402
from mmrepghost.utils.reports import write_report  # noqa: E402
from mmrepghost.utils.timing import measure_interleaved  # noqa: E402

OURS, GHOST, MNV4 = 'RepGhostNet 1.0x', 'GhostNet 1.0x', 'MobileNetV4-conv-small'
#: the networks, in table order, with their published ImageNet top-1 (see benchmark_latency)
TOP1 = {name: PUBLISHED_TOP1[name] for name in (OURS, MNV4, GHOST)}
KINDS = ('pointwise conv', 'depthwise conv', 'dense kxk conv', 'SE block', 'FC head',
         'elementwise', 'layout', 'other')
#: activations the runtimes fuse into the conv (or Gemm) producing their input
ACTIVATIONS = ('Relu', 'Clip', 'HardSigmoid', 'HardSwish', 'Sigmoid', 'LeakyRelu')
ELEMENTWISE = ACTIVATIONS + ('Add', 'Mul', 'Sub', 'Div', 'Concat', 'Slice', 'Split')
POOLS = ('GlobalAveragePool', 'ReduceMean')
#: kernels that only move data between layouts (onnxruntime NCHWc, OpenVINO)
LAYOUT_KERNELS = ('ReorderInput', 'ReorderOutput', 'Reorder', 'Reshape', 'Transpose')
SIMD_FP32 = 16  # AVX-512 fp32 lanes; the NCHWc block size of onnxruntime on such a CPU
ORT_LEVELS = ('ORT_ENABLE_ALL', 'ORT_ENABLE_EXTENDED', 'ORT_ENABLE_BASIC')


def parse_args(argv=None):
    parser = benchmark_parser(__doc__.split('\n\n')[0], 'work_dirs/benchmark_profile',
                              '64x64, batch 1 only, 5 runs (for tests)')
    return parse_benchmark_args(parser, argv)


# --- the networks ------------------------------------------------------------------------------
def build_networks():
    """{name: eval-mode model}: ours deployed, then the two timm peers (no weights); BN
    statistics calibrated on random batches first, as in ``benchmark_latency``'s networks."""
    import timm
    ours = calibrate_bn_(build_classifier('1.0x'), (2, 3, 224, 224))
    reparameterize_model(ours, logger='silent')
    nets = {OURS: ours}
    for name in (MNV4, GHOST):
        model = timm.create_model(PEERS[name].timm_name, pretrained=False)
        nets[name] = calibrate_bn_(model, (2, 3, 224, 224))
    return nets


def export_static(model, path, shape):
    """``model`` exported with every input and output dimension fixed to ``shape``'s."""
    wrapper = RawOutputs(model).eval()
    example = torch.randn(*shape)
    with torch.no_grad():
        torch.onnx.export(wrapper, (example, ), path, dynamo=False,
                          opset_version=DEFAULT_OPSETS['torchscript'], input_names=['images'],
                          output_names=wrapper.output_names(example), do_constant_folding=True)


# --- the ONNX graph: shapes, FLOPs, bytes, kinds -----------------------------------------------
def _numel(shape):
    return int(np.prod(shape)) if shape is not None else 0


def node_flops(node, shapes):
    """FLOPs of one ONNX node (multiply and add counted apart) from the static ``shapes``."""
    out = shapes.get(node.output[0]) if node.output else None
    if node.op_type == 'Conv':
        weight = shapes[node.input[1]]  # (Cout, Cin / groups, kH, kW)
        return 2 * _numel(out) * _numel(weight[1:])
    if node.op_type == 'Gemm':
        a = shapes[node.input[0]]
        k = a[0] if node_attribute(node, 'transA', 0) else a[1]
        return 2 * _numel(out) * k
    if node.op_type == 'MatMul':
        return 2 * _numel(out) * shapes[node.input[0]][-1]
    if node.op_type in POOLS:
        return _numel(shapes.get(node.input[0]))
    if node.op_type in ACTIVATIONS or node.op_type in ('Add', 'Mul', 'Sub', 'Div'):
        return _numel(out)
    return 0


def _se_nodes(graph, producer):
    """Names of the nodes of squeeze-and-excitation blocks: ``x * gate(pool(x))``."""
    found = set()
    for node in graph.node:
        if node.op_type != 'Mul' or len(node.input) != 2:
            continue
        for x, gate in (node.input, node.input[::-1]):
            path, name = [], gate
            while name in producer and len(path) < 8:
                step = producer[name]
                path.append(step.name)
                if step.op_type in POOLS:
                    if step.input[0] == x:
                        found.update(path + [node.name])
                    break
                if step.op_type not in ACTIVATIONS + ('Conv', 'Add', 'Div', 'Identity'):
                    break
                name = step.input[0]
    return found


def classify_nodes(model):
    """{node name: kind} (one of :data:`KINDS`) for a shape-inferred ModelProto."""
    graph = model.graph
    shapes = tensor_shapes(model)
    producer, _ = graph_edges(graph)
    se = _se_nodes(graph, producer)
    kinds = {}
    for node in graph.node:
        out = shapes.get(node.output[0], ())
        if node.name in se:
            kind = 'SE block'
        elif node.op_type == 'Conv':
            weight = shapes[node.input[1]]
            if node_attribute(node, 'group', 1) > 1:
                kind = 'depthwise conv'
            elif _numel(out[2:]) == 1:
                kind = 'FC head'
            else:
                kind = 'pointwise conv' if _numel(weight[2:]) == 1 else 'dense kxk conv'
        elif node.op_type in ('Gemm', 'MatMul', 'Flatten', 'Reshape') + POOLS:
            kind = 'FC head'
        elif node.op_type in ELEMENTWISE:
            kind = 'elementwise'
        else:
            kind = 'other'
        kinds[node.name] = kind
    for node in graph.node:  # fused activations count with their conv
        source = producer.get(node.input[0]) if node.input else None
        if node.op_type in ACTIVATIONS and source is not None and source.op_type in (
                'Conv', 'Gemm') and kinds[node.name] != 'SE block':
            kinds[node.name] = kinds[source.name]
    return kinds


def node_bytes(node, shapes, producer):
    """Rough fp32 bytes a node moves: its inputs, weights and output (0 for an activation the
    runtimes fuse into the conv before it, and for shape-only nodes; a Slice's 1-D index
    inputs not counted)."""
    source = producer.get(node.input[0]) if node.input else None
    if node.op_type in ('Identity', 'Flatten', 'Reshape', 'Constant', 'Shape') or (
            node.op_type in ACTIVATIONS and source is not None
            and source.op_type in ('Conv', 'Gemm')):
        return 0
    names = [n for n in (*node.input, *node.output) if n]
    return 4 * sum(_numel(shapes.get(n)) for n in names
                   if len(shapes.get(n, ())) > 1 or node.op_type != 'Slice')


def graph_costs(model):
    """{node name: dict(op, kind, flops, bytes, label, channels)} of a shape-inferred model."""
    from mmrepghost.deploy.quantize.onnx_graph import onnx_layer_kind
    shapes = tensor_shapes(model)
    producer, _ = graph_edges(model.graph)
    kinds = classify_nodes(model)
    costs = {}
    for node in model.graph.node:
        cost = dict(op=node.op_type, kind=kinds[node.name], flops=node_flops(node, shapes),
                    bytes=node_bytes(node, shapes, producer), label=node.op_type, channels=0)
        if node.op_type == 'Conv':
            out = shapes[node.output[0]]
            cost['label'] = onnx_layer_kind(model.graph, node, out)
            cost['channels'] = out[1]
        costs[node.name] = cost
    return costs


# --- mapping kernels to ONNX nodes --------------------------------------------------------------
def node_index(model):
    """({node name: node}, {tensor name: the node writing it}) of a ModelProto."""
    return {node.name: node for node in model.graph.node}, graph_edges(model.graph)[0]


def _named(name, index):
    """The ONNX node called ``name``, or the one writing the tensor called ``name``, or None."""
    return index[0].get(name) or index[1].get(name)


def ort_node_for(kernel, op, index):
    """The ONNX node an onnxruntime profiler kernel (``name`` without ``_kernel_time``, its
    ``op_name``) computes, or None: by node name, or by the name of the tensor it writes
    (NCHWc kernels: ``<tensor>_nchwc``, fused ones ``fused <node>``); a conv writing a fused
    activation's output maps to the conv. ``index``: :func:`node_index` of the model."""
    producer = index[1]
    kernel = kernel[:-len('_nchwc')] if kernel.endswith('_nchwc') else kernel
    node = _named(kernel[len('fused '):] if kernel.startswith('fused ') else kernel, index)
    if node is None:
        return None
    while op in ('Conv', 'FusedConv') and node.op_type != 'Conv' and node.input \
            and node.input[0] in producer:
        node = producer[node.input[0]]
    return node


def ov_node_for(kernel, index):
    """The name of the ONNX node an OpenVINO profiling entry names (``<onnx name>/WithoutBiases``
    and the like; the last FullyConnected is named after its output tensor), or None."""
    while kernel:
        node = _named(kernel, index)
        if node is not None:
            return node.name
        kernel = kernel.rsplit('/', 1)[0] if '/' in kernel else ''
    return None


def kind_of_kernel(node_name, op, costs):
    """The kind a kernel's time counts as: its ONNX node's, else layout by operator, else
    'unmapped'."""
    if node_name is not None and node_name in costs:
        return costs[node_name]['kind']
    return 'layout' if op in LAYOUT_KERNELS else 'unmapped'


# --- sessions and profiles -----------------------------------------------------------------------
def per_kind(samples, costs, runs):
    """dict(ms={kind: median over runs of its summed time}, kernels={kind: kernels a run},
    nodes={ONNX node: median ms}, unmapped=[kernels]) of ``samples`` ({kernel: (ONNX node name
    or None, op, [ms per run])})."""
    per_run = defaultdict(lambda: np.zeros(runs))
    kernels, nodes, unmapped = defaultdict(int), defaultdict(float), []
    for kernel, (node, op, ms) in samples.items():
        ms = np.asarray(list(ms[:runs]) + [0.0] * (runs - len(ms)))
        kind = kind_of_kernel(node, op, costs)
        per_run[kind] += ms
        kernels[kind] += 1
        if node is not None:
            nodes[node] += float(np.median(ms))
        elif kind == 'unmapped':
            unmapped.append(f'{op} {kernel}')
    return dict(ms={kind: float(np.median(v)) for kind, v in per_run.items()},
                kernels=dict(kernels), nodes=dict(nodes), unmapped=unmapped)


def profile_networks(paths, feed, models, costs, runs, tmp_dir, ov_core):
    """{(network, runtime): :func:`per_kind` dict} of ``runs`` profiled
    1-thread runs, all sessions round-robin."""
    warmup = 2
    sessions = {}
    for name, path in paths.items():
        for level in ORT_LEVELS[:2]:
            prefix = osp.join(tmp_dir, f'profile_{len(sessions)}')
            sessions[(name, f'onnxruntime {level[11:].lower()}')] = ort_session(
                path, 1, prefix, level)
        if ov_core is not None:
            import openvino
            model = ov_core.read_model(path)
            model.reshape({model.input(0).get_any_name():
                           openvino.PartialShape(list(feed['images'].shape))})
            compiled = ov_core.compile_model(model, 'CPU', {**openvino_config(1),
                                                            'PERF_COUNT': True})
            sessions[(name, 'openvino')] = compiled.create_infer_request()
    ov_means = defaultdict(list)  # the cumulative means after the warm-up and at the end
    for run in range(warmup + runs):
        for key, session in sessions.items():
            if key[1] != 'openvino':
                session.run(None, feed)
                continue
            session.infer(feed)
            if run in (warmup - 1, warmup + runs - 1):
                ov_means[key].append(snapshot(session))
    profiles = {}
    indexes = {network: node_index(model) for network, model in models.items()}
    for key, session in sessions.items():
        network = key[0]
        if key[1] == 'openvino':
            samples = {name: (None if op == 'Reorder' else ov_node_for(name, indexes[network]),
                              op, [ms] * runs)
                       for name, op, ms in mean_times(*ov_means[key], warmup, runs)}
        else:
            path = session.end_profiling()
            samples = {kernel: (getattr(ort_node_for(kernel, op, indexes[network]), 'name',
                                        None), op, ms)
                       for kernel, (op, ms) in kernel_times(path, warmup).items()}
            os.remove(path)
        profiles[key] = per_kind(samples, costs[network], runs)
    return profiles


def reference_bandwidth_gbs(runs):
    """GB/s of a one-thread numpy add of two 800 kB fp32 arrays (in cache, like the
    network's activations): the bandwidth an elementwise kernel can reach here."""
    a, b = np.random.rand(2, 200704).astype(np.float32)
    out = np.empty_like(a)
    for _ in range(20):
        np.add(a, b, out=out)
    best = []
    for _ in range(max(runs, 20)):
        start = time.perf_counter()
        for _ in range(10):
            np.add(a, b, out=out)
        best.append((time.perf_counter() - start) / 10)
    return 3 * a.nbytes / statistics.median(best) / 1e9


# --- latency variants ---------------------------------------------------------------------------
def check_close(outputs, reference, what):
    _close([np.asarray(o) for o in outputs], reference, what)


def time_variants(nets, batch, size, runs, tmp_dir, ov_core):
    """({(network, variant): Latency}, measured peak GFLOP/s): every function-preserving
    variant at ``batch``; the peak probe (``benchmark_latency.PEAK_PROBE``) runs in the same
    round-robin as the onnxruntime and OpenVINO variants."""
    shape = (batch, 3, size, size)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(batch))
    feed = {'images': x.numpy()}
    runtimes, eager = {}, {}
    for i, (name, model) in enumerate(nets.items()):
        dynamic = osp.join(tmp_dir, f'variant{i}_b{batch}.onnx')
        static = osp.join(tmp_dir, f'variant{i}_b{batch}_static.onnx')
        annotated = osp.join(tmp_dir, f'variant{i}_b{batch}_annotated.onnx')
        padded = osp.join(tmp_dir, f'variant{i}_b{batch}_padded.onnx')
        both = osp.join(tmp_dir, f'variant{i}_b{batch}_annotated_padded.onnx')
        export_onnx(model, dynamic, shape, overwrite=True, annotate=False)
        export_onnx(model, annotated, shape, overwrite=True)
        export_onnx(model, padded, shape, overwrite=True, annotate=False,
                    pad_channels_to=SIMD_FP32)
        export_onnx(model, both, shape, overwrite=True, pad_channels_to=SIMD_FP32)
        export_static(model, static, shape)
        reference = ort_session(dynamic, 1).run(None, feed)
        candidates = {f'onnxruntime {level[11:].lower()}': ort_session(dynamic, 1, level=level)
                      for level in ORT_LEVELS}
        candidates['onnxruntime all, spinning'] = ort_session(dynamic, 1, spinning=True)
        candidates['onnxruntime all, static-shape export'] = ort_session(static, 1)
        candidates[f'onnxruntime all, channels padded to {SIMD_FP32}'] = ort_session(padded, 1)
        candidates['onnxruntime all, shapes annotated (export_onnx)'] = ort_session(annotated, 1)
        candidates[f'onnxruntime all, shapes annotated, channels padded to {SIMD_FP32}'] = \
            ort_session(both, 1)
        for variant, session in candidates.items():
            run = (lambda s=session: s.run(None, feed))
            check_close(run(), reference, f'{name}, {variant}')
            runtimes[(name, variant)] = run
        if ov_core is not None:
            for variant, path, is_static in (
                    ('openvino static shape', dynamic, True),
                    ('openvino dynamic shape', dynamic, False),
                    (f'openvino static shape, channels padded to {SIMD_FP32}', padded, True)):
                runner = openvino_runner(ov_core, path, shape, 1, is_static)
                check_close(runner(feed), reference, f'{name}, {variant}')
                runtimes[(name, variant)] = (lambda r=runner: r(feed))
        for layout in ('NCHW', 'channels-last'):
            net = copy.deepcopy(model)
            if layout == 'channels-last':
                net = net.to(memory_format=torch.channels_last)
            wrapper = RawOutputs(net).eval()
            with torch.no_grad():
                check_close([t.numpy() for t in wrapper(x)], reference,
                            f'{name}, eager {layout}')
            eager[(name, f'pytorch eager {layout}')] = (lambda w=wrapper: w(x))
    probe, probe_flops = peak_probe(1)
    timed = measure_interleaved({**runtimes, 'peak probe': probe}, runs)
    probe_gflops = gflops(probe_flops, timed.pop('peak probe').median_ms)
    with torch.no_grad():
        timed.update(measure_interleaved(eager, runs))
    return timed, probe_gflops


# --- report -------------------------------------------------------------------------------------
def gflops(flops, ms):
    return flops / (ms / 1e3) / 1e9 if ms > 0 else 0.0


def latency_rows(timed, batch, size, total_flops, peak, probe_gflops):
    rows = []
    variants = list(dict.fromkeys(v for _, v in timed))
    for variant in variants:
        ms = {name: timed[(name, variant)].median_ms for name in TOP1 if (name, variant) in timed}
        achieved = gflops(total_flops[OURS] * batch, ms[OURS])

        def ratio(other):
            return round(ms[OURS] / ms[other], 4) if other in ms else ''

        rows.append(dict(part='latency', variant=variant, batch=batch, input=f'{size}x{size}',
                         **{f'{name} ms': round(v, 4) for name, v in ms.items()},
                         **{f'{name} min ms': round(timed[(name, variant)].min_ms, 4)
                            for name in ms},
                         ours_vs_ghostnet=ratio(GHOST), ours_vs_mnv4=ratio(MNV4),
                         ours_gflops=round(achieved, 2),
                         ours_peak_pct=round(100 * achieved / peak, 1) if peak else '',
                         measured_peak_gflops=round(probe_gflops, 1),
                         ours_measured_peak_pct=round(100 * achieved / probe_gflops, 1)))
    return rows


def profile_rows(profiles, costs, peak, bandwidth):
    rows = []
    ridge = peak / bandwidth if peak else 0.0
    for (network, runtime), profile in profiles.items():
        times = profile['ms']
        total = sum(times.values())
        flops, moved = defaultdict(int), defaultdict(int)
        for cost in costs[network].values():
            flops[cost['kind']] += cost['flops']
            moved[cost['kind']] += cost['bytes']
        for kind in KINDS + ('unmapped', ):
            ms = times.get(kind, 0.0)
            if not ms and not flops[kind]:
                continue
            achieved = gflops(flops[kind], ms)
            intensity = flops[kind] / moved[kind] if moved[kind] else 0.0
            # the roofline: the lower of the peak and what the in-cache bandwidth can feed
            roof = min(peak, intensity * bandwidth) if peak else 0.0
            count = profile['kernels'].get(kind, 0)
            rows.append(dict(
                part='profile', network=network, runtime=runtime, kind=kind,
                ms=round(ms, 4), share_pct=round(100 * ms / total, 1) if total else 0.0,
                kernels=count, us_per_kernel=round(1e3 * ms / count, 1) if count else 0.0,
                mflops=round(flops[kind] / 1e6, 2), gflops=round(achieved, 2),
                peak_pct=round(100 * achieved / peak, 1) if peak else '',
                mbytes=round(moved[kind] / 1e6, 3),
                gbytes_per_s=round(moved[kind] / (ms / 1e3) / 1e9, 1) if ms else 0.0,
                flop_per_byte=round(intensity, 2),
                bound=('-' if not flops[kind] else
                       'memory' if intensity < ridge else 'compute'),
                roofline_pct=round(100 * achieved / roof, 1) if roof else ''))
    return rows


def depthwise_rows(profiles, costs):
    rows = []
    for network, network_costs in costs.items():
        for node, cost in network_costs.items() if network in TOP1 else ():
            if cost['kind'] != 'depthwise conv' or cost['op'] != 'Conv':
                continue
            row = dict(part='depthwise', network=network, node=node, layer=cost['label'],
                       channels=cost['channels'],
                       simd_multiple=cost['channels'] % SIMD_FP32 == 0,
                       mflops=round(cost['flops'] / 1e6, 3))
            for (name, runtime), profile in profiles.items():
                if name == network:
                    ms = profile['nodes'].get(node, 0.0)
                    row[f'{runtime} ms'] = round(ms, 4)
                    row[f'{runtime} gflops'] = round(gflops(cost['flops'], ms), 2)
            rows.append(row)
    return rows


def _table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(cell) for cell in row) + ' |' for row in rows]
    return '\n'.join(lines) + '\n'


def _ms_of(latency, variant, batch, network):
    row = next((r for r in latency if r['variant'] == variant and r['batch'] == batch), None)
    return row[f'{network} ms'] if row else None


def why_lines(latency, profile, depthwise, peak, bandwidth, total_flops):
    """What the numbers say, computed from the rows."""
    lines = []
    by = defaultdict(dict)
    for r in profile:
        by[(r['network'], r['runtime'])][r['kind']] = r
    runtimes = list(dict.fromkeys(r['runtime'] for r in profile))
    for runtime in runtimes:
        mine, theirs = by[(OURS, runtime)], by[(MNV4, runtime)]
        sums = [sum(r[key] for r in rows.values()) for rows in (mine, theirs)
                for key in ('ms', 'kernels')]
        gaps = sorted(((mine.get(k, {}).get('ms', 0.0) - theirs.get(k, {}).get('ms', 0.0), k)
                       for k in set(mine) | set(theirs)), reverse=True)
        parts = ', '.join(f'{k} {gap:+.3f}' for gap, k in gaps if abs(gap) >= 0.005)
        lines.append(f'{runtime}: kernel time ours {sums[0]:.3f} ms in {sums[1]} kernels, '
                     f'{MNV4} {sums[2]:.3f} ms in {sums[3]} kernels '
                     f'({sums[0] - sums[2]:+.3f} ms; {1e3 * sums[0] / sums[1]:.1f} vs '
                     f'{1e3 * sums[2] / sums[3]:.1f} us a kernel); by kind, ours minus theirs '
                     f'(ms): {parts}.')
        top = sorted(mine.values(), key=lambda r: -r['ms'])[:4]
        lines.append(f'{runtime}, ours by kind: ' + '; '.join(
            f"{r['kind']} {r['share_pct']}% of the time, "
            f"{100 * r['mflops'] * 1e6 / total_flops[OURS]:.0f}% of the FLOPs, "
            f"{r['gflops']} GFLOP/s = {r['peak_pct']}% of peak, {r['flop_per_byte']} FLOP/B "
            f"({r['bound']}-bound side of the ridge, {r['roofline_pct']}% of its roofline), "
            f"{r['kernels']} kernels of {r['us_per_kernel']} us" for r in top) + '.')
        for kind, what in (('SE block', 'fusing the SE blocks into one kernel each could save '
                                        'at most that'),
                           ('layout', 'the layout conversions')):
            if kind in mine:
                lines.append(f'{runtime}: {kind} {mine[kind]["ms"]:.3f} ms '
                             f'({mine[kind]["share_pct"]}% of ours, {mine[kind]["kernels"]} '
                             f'kernels): {what}.')

    def counts(network, runtime):
        rows = by[(network, runtime)]
        found = [(sum(r['kernels'] for r in rows.values()), sum(r['ms'] for r in rows.values()))]
        found += [(rows[k]['kernels'], rows[k]['ms']) if k in rows else (0, 0.0)
                  for k in ('layout', 'elementwise')]
        return ', '.join(f'{n} ({ms:.3f})' for n, ms in found)

    for runtime in runtimes:
        for network in [n for n, rt in by if rt == runtime and n.startswith(OURS + ',')]:
            lines.append(f'{runtime}, kernels a run (their ms), layout kernels (ms), '
                         f'elementwise kernels (ms): {network}: {counts(network, runtime)}; '
                         f'as deployed: {counts(OURS, runtime)}.')
        parts = []
        for network in TOP1:
            split = []
            for multiple in (True, False):
                chosen = [r for r in depthwise if r['network'] == network
                          and r['simd_multiple'] == multiple and f'{runtime} ms' in r]
                t = sum(r[f'{runtime} ms'] for r in chosen)
                f = sum(r['mflops'] for r in chosen) * 1e6
                split.append(f'{len(chosen)} layers {t:.3f} ms {gflops(f, t):.1f} GFLOP/s')
            parts.append(f'{network}: {split[0]} (multiple of {SIMD_FP32}) vs {split[1]} (not)')
        lines.append(f'{runtime}, depthwise convs: ' + '; '.join(parts) + '.')
    for runtime, variant in (('onnxruntime all', 'onnxruntime all'),
                             ('openvino', 'openvino static shape')):
        parts = []
        for network in TOP1:
            wall = _ms_of(latency, variant, 1, network)
            kernels = sum(r['ms'] for r in by[(network, runtime)].values())
            if wall and kernels:
                parts.append(f'{network} {kernels / wall:.2f}')
        if parts:
            lines.append(f'{runtime}: profiled kernel time / unprofiled latency of the call '
                         f'(batch 1): {", ".join(parts)} (the profiler adds its own time; the '
                         'shares of the kinds are what to read).')
    for batch in sorted({r['batch'] for r in latency}):
        rows = [r for r in latency if r['batch'] == batch]
        default = next(r for r in rows if r['variant'] == 'onnxruntime all')
        best = min((r for r in rows if r['ours_vs_ghostnet'] != ''),
                   key=lambda r: r[f'{OURS} ms'])

        def change(r):
            found = [f'{network} {r[f"{network} ms"] / default[f"{network} ms"]:.2f}x'
                     for network in TOP1 if r.get(f'{network} ms') not in ('', None)]
            return f"{r['variant']}: {found[0]} ({', '.join(found[1:])})"
        changes = '; '.join(change(r) for r in rows if r is not default)
        lines.append(
            f'batch {batch}, each variant against onnxruntime\'s default session (median / '
            f'median; the peers in brackets show what the same change does to them): '
            f'{changes}. Fastest with all three networks: {best["variant"]} '
            f'({best[f"{OURS} ms"]:.3f} ms, {best["ours_gflops"]} GFLOP/s = '
            f'{best["ours_peak_pct"]}% of peak; there ours / GhostNet 1.0x '
            f'{best["ours_vs_ghostnet"]:.2f}x, ours / {MNV4} {best["ours_vs_mnv4"]:.2f}x). '
            f'Default: ours / GhostNet 1.0x {default["ours_vs_ghostnet"]:.2f}x, ours / {MNV4} '
            f'{default["ours_vs_mnv4"]:.2f}x, {default["ours_peak_pct"]}% of peak.')
    for batch in sorted({r['batch'] for r in latency}):
        ghost = _ms_of(latency, 'onnxruntime all', batch, GHOST)
        for variant in ('onnxruntime all, shapes annotated (export_onnx)',
                        f'onnxruntime all, shapes annotated, channels padded to {SIMD_FP32}'):
            row = next((r for r in latency if (r['variant'], r['batch']) == (variant, batch)),
                       None)
            if row and ghost:
                lines.append(
                    f'batch {batch}: ours as `{variant[17:]}` / GhostNet 1.0x as '
                    f'torch.onnx.export writes it (onnxruntime all): '
                    f'{row[f"{OURS} ms"] / ghost:.2f}x; {row["ours_gflops"]} GFLOP/s = '
                    f'{row["ours_measured_peak_pct"]}% of the measured peak '
                    f'({row["measured_peak_gflops"]} GFLOP/s), {row["ours_peak_pct"]}% of the '
                    f'nominal one.')
    lines.append(f'FLOPs at this input: ours {total_flops[OURS] / 1e6:.1f} M, {MNV4} '
                 f'{total_flops[MNV4] / 1e6:.1f} M, GhostNet 1.0x '
                 f'{total_flops[GHOST] / 1e6:.1f} M. Ridge point '
                 f'{peak / bandwidth:.2f} FLOP/B: one core\'s peak {peak:.0f} GFLOP/s over the '
                 f'in-cache add bandwidth {bandwidth:.1f} GB/s.' if peak else
                 'Peak unknown: no ridge point.')
    return lines


def markdown(latency, profile, depthwise, notes, why):
    text = ['## Latency variants (1 thread, median ms; ratios of medians)\n']
    header = ['variant', 'batch', *[f'{n} ms' for n in TOP1], 'ours / GhostNet',
              'ours / MNv4-conv-s', 'ours GFLOP/s', 'ours % of nominal peak',
              'ours % of measured peak']

    def cell(value, digits):
        return '-' if value in ('', None) else f'{value:.{digits}f}'

    text.append(_table(header, [[r['variant'], r['batch'], *[
        cell(r.get(f'{n} ms'), 3) for n in TOP1], cell(r['ours_vs_ghostnet'], 2),
        cell(r['ours_vs_mnv4'], 2), r['ours_gflops'], r['ours_peak_pct'],
        r['ours_measured_peak_pct']] for r in latency]))
    text.append('\n## Per-op profile by kind (1 thread, batch 1; median kernel ms a run)\n')
    header = ['network', 'runtime', 'kind', 'ms', 'share %', 'kernels', 'us/kernel', 'MFLOPs',
              'GFLOP/s', '% peak', 'MB moved', 'GB/s', 'FLOP/B', 'bound', '% of roofline']
    text.append(_table(header, [[r[k] for k in (
        'network', 'runtime', 'kind', 'ms', 'share_pct', 'kernels', 'us_per_kernel', 'mflops',
        'gflops', 'peak_pct', 'mbytes', 'gbytes_per_s', 'flop_per_byte', 'bound',
        'roofline_pct')] for r in profile]))
    ours = [r for r in depthwise if r['network'] == OURS]
    runtimes = [k[:-3] for k in (ours[0] if ours else {}) if k.endswith(' ms')]
    text.append(f'\n## Depthwise convs of {OURS} (batch 1)\n')
    header = ['layer', 'channels', f'multiple of {SIMD_FP32}', 'MFLOPs'] + [
        f'{rt} {unit}' for rt in runtimes for unit in ('ms', 'GFLOP/s')]
    text.append(_table(header, [[r['layer'], r['channels'], 'yes' if r['simd_multiple'] else
                                 'no', r['mflops']] + [r[f'{rt} {unit}'] for rt in runtimes
                                                       for unit in ('ms', 'gflops')]
                                for r in ours]))
    text.append('\n## Why\n')
    text.append(''.join(f'- {line}\n' for line in why + notes))
    return '\n'.join(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    size = 64 if args.quick else 224
    batches = [1] if args.quick else [1, 8]
    peak, how = single_core_peak_gflops()
    ridge_bw = reference_bandwidth_gbs(args.runs)
    ov_core = openvino_core()
    nets = build_networks()
    notes = [f'Peak: {peak:.0f} GFLOP/s ({how}).' if peak else f'Peak unknown ({how}).']
    with tempfile.TemporaryDirectory() as tmp_dir:
        import onnx
        shape = (1, 3, size, size)
        paths, models, costs = {}, {}, {}
        for i, (name, model) in enumerate(nets.items()):
            paths[name] = osp.join(tmp_dir, f'net{i}.onnx')
            # ours as export_onnx writes it (symbolic shapes recorded), the peers plain
            export_onnx(model, paths[name], shape, overwrite=True, annotate=name == OURS)
            models[name] = static_shapes(onnx.load(paths[name]), shape)
            costs[name] = graph_costs(models[name])
        # ours as exported with static shapes and with its channels padded: what changes
        for name, path in ((f'{OURS}, static-shape export', osp.join(tmp_dir, 'static.onnx')),
                           (f'{OURS}, channels padded to {SIMD_FP32}',
                            osp.join(tmp_dir, 'padded.onnx'))):
            if name.endswith('export'):
                export_static(nets[OURS], path, shape)
            else:
                export_onnx(nets[OURS], path, shape, pad_channels_to=SIMD_FP32)
            paths[name] = path
            models[name] = static_shapes(onnx.load(path), shape)
            costs[name] = graph_costs(models[name])
        total_flops = {name: sum(c['flops'] for c in cost.values())
                       for name, cost in costs.items()}
        feed = {'images': torch.randn(*shape).numpy()}
        profiles = profile_networks(paths, feed, models, costs, args.runs, tmp_dir, ov_core)
        latency = []
        for batch in batches:
            timed, probe_gflops = time_variants(nets, batch, size, args.runs, tmp_dir,
                                                ov_core)
            latency += latency_rows(timed, batch, size, total_flops, peak, probe_gflops)
    profile = profile_rows(profiles, costs, peak, ridge_bw)
    depthwise = depthwise_rows(profiles, costs)
    for (network, runtime), found in profiles.items():
        unmapped = found['unmapped']
        if unmapped:
            notes.append(f'{network}, {runtime}: {len(unmapped)} kernels not mapped to an '
                         f'ONNX node (counted as "unmapped"): {", ".join(unmapped[:4])}'
                         f'{", ..." if len(unmapped) > 4 else ""}.')
    why = why_lines(latency, profile, depthwise, peak, ridge_bw, total_flops)
    text = markdown(latency, profile, depthwise, notes, why)
    write_report(args.out_dir, 'results', text, latency + profile + depthwise)
    print(text)
    print(f'wrote {args.out_dir}/results.md, results.csv')
    return 0


if __name__ == '__main__':
    sys.exit(main())
