#!/usr/bin/env python
"""CPU latency of RepGhostNet (train structure vs deployed) and today's mobile backbones.

    python tools/benchmark_latency.py [--out-dir work_dirs/benchmark] [--runs 30]
        [--parts models layouts table1 detectors training end2end] [--quick]

Everything is measured in one run on this machine, so the ratios are the result; absolute
milliseconds depend on the CPU. Each case: median (min, max) of ``--runs`` timed calls after
warm-up. The cases compared in one table are timed interleaved (one call of each,
round-robin), so drift of a shared machine does not favour whichever runs at a quiet moment:

* ``models``: 224x224, 1 thread, batch 1 and 8 (one table each): RepGhostNet at every width,
  train structure and deployed, and the timm peers of :data:`PEERS` in their deployed form
  (``timm.utils.reparameterize_model``), all without weights (BN statistics calibrated on
  random batches, :func:`calibrate_bn_`), in PyTorch eager, ``torch.compile`` (Inductor with
  freezing; compile time reported), onnxruntime and OpenVINO (RepGhostNet as ``export_onnx``
  writes it, shapes recorded; the peers as plain ``torch.onnx.export`` writes them), and int8
  in onnxruntime (QDQ) and OpenVINO (NNCF) with every layer quantized (the deployed networks;
  speed only). Each
  network's published ImageNet top-1 and its source are in :data:`REPGHOST_TOP1` and
  :data:`PEERS`; the report draws the latency/top-1 Pareto front per runtime and says how
  far each RepGhostNet width is off it.
* ``table1``: the paper's Table 1 -- the 32 concatenations of GhostNet 1.0x's Ghost modules
  against additions of the same tensors, batch 1/2/8/32 (PyTorch eager).
* ``detectors``: RetinaNet-RepGhostNet 1.3x deployed vs RetinaNet-MobileNetV2 (mmdet's) up to
  the head outputs, at 320x320 and 800x1344 (1333 padded to 32), batch 1, 1 and all threads.
* ``layouts``: RepGhostNet 1.0x train structure and deployed in PyTorch eager, with NCHW and
  with channels-last weights (``model.to(memory_format=torch.channels_last)``; the input stays
  NCHW): oneDNN runs the deployed depthwise convs much faster channels-last, while the train
  structure's BatchNorms gain nothing from it.
* ``training``: one SGD step (forward, cross-entropy, backward, update) of the RepGhostNet
  1.0x classifier with the paper's BN re-parameterization branch and without it
  (``reparam_branches=()``), batch 8, all threads, in eager and compiled, fp32 and bf16
  autocast: the price of the branch during training.
* ``end2end``: RetinaNet-RepGhostNet 1.0x deployed (64-channel FPN/head), 1 thread, batch 1,
  320x320: the end-to-end graph (``mmrepghost.deploy.end2end``: decoding, top-k and NMS in the
  graph) in onnxruntime and OpenVINO against the raw-output graph followed by this tool's numpy
  post-processing (:class:`NumpyDensePostprocess`, checked to give the graph's detections before
  anything is timed), and the raw graph alone; plus an onnxruntime profile of both graphs, per
  operator type, so the cost of the in-graph post-processing can be read off.

OpenVINO compiles the same .onnx files for ``CPU`` with :func:`openvino_config`: the threads of
the case, the LATENCY hint, fp32 forced (``INFERENCE_PRECISION_HINT``: on a CPU with bf16 it
would otherwise run in bf16; the compiled model's precision is checked, and its outputs against
onnxruntime's) and no CPU pinning; the model is reshaped to the case's static input shape, which
was faster than the dynamic one (the ``openvino (dynamic shape)`` rows of deployed RepGhostNet
1.0x keep measuring that). Without the ``openvino`` package its columns are skipped, with a
note. torch.compile: see :func:`own_entry` and the oneDNN cache note below the imports.

The ``models`` part also reports the achieved GFLOP/s of the deployed RepGhostNet 1.0x in
onnxruntime and OpenVINO (1 thread) against one core's peak, two ways: **measured** in the
same round-robin (:data:`PEAK_PROBE`, a dense 3x3 conv in onnxruntime, the most compute-bound
kernel a CNN runs; a ratio of two measurements of one run) and **nominal**: FP32 lanes of the
widest FMA (AVX-512: 16, AVX2: 8) x 2 FMA pipes x 2 FLOPs x the clock /proc/cpuinfo reports
(the base clock: a boosting core runs faster than it, so this share reads high and moves with
the machine's clock between runs).

Writes ``results.md`` (a header with the date, machine and versions; the tables, the Pareto
fronts, the goal ratios; every case; the peers' top-1 sources), ``results.csv`` and
``pareto_<runtime>.png`` (latency against published top-1, RepGhostNet's widths as a line, the
front drawn; all of them in ``pareto.png``) into ``--out-dir``. ``--quick`` runs one small
case of each kind (for CI).
"""
import argparse
import copy
import math
import os
import os.path as osp
import re
import sys
import tempfile
import time
import types
from typing import NamedTuple

# oneDNN (PyTorch's CPU convolutions, eager and Inductor's) keeps its compiled kernels in a
# process-wide cache of 1024 by default; the ``models`` part runs ~50 networks of ~100 convs
# each round-robin, and with the default every call would miss and re-create its kernels (the
# torch.compile column measured 2-3x slower than each network alone). A deployment runs one
# network, whose kernels stay cached: so does each network here. Read once, at oneDNN's first
# kernel, hence before torch is imported.
os.environ.setdefault('ONEDNN_PRIMITIVE_CACHE_CAPACITY', '16384')

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn.modules.batchnorm import _BatchNorm  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

from mmrepghost.deploy import build_model, reparameterize_model  # noqa: E402
from mmrepghost.deploy.end2end import end2end_module, export_graph  # noqa: E402
from mmrepghost.deploy.onnx import RawOutputs, export_onnx  # noqa: E402
from mmrepghost.models import ARCH_WIDTHS, repghostnet_classifier_cfg  # noqa: E402
from mmrepghost.utils import atomic_write  # noqa: E402
from mmrepghost.utils.ort_profile import kernel_times  # noqa: E402
from mmrepghost.utils.pareto import front_gap, latency_at, pareto_front  # noqa: E402
from mmrepghost.utils.reports import environment_lines, write_report  # noqa: E402
from mmrepghost.utils.timing import measure_interleaved  # noqa: E402

#: ImageNet top-1 (%) of the RepGhostNet widths: the paper's Table 3 (224 px)
REPGHOST_TOP1 = {
    'RepGhostNet 0.5x': 66.9, 'RepGhostNet 0.58x': 68.9, 'RepGhostNet 0.8x': 72.2,
    'RepGhostNet 1.0x': 74.2, 'RepGhostNet 1.11x': 75.1, 'RepGhostNet 1.3x': 76.4,
    'RepGhostNet 1.5x': 77.5, 'RepGhostNet 2.0x': 78.8,
}
#: where the peers' top-1 comes from: timm's own evaluation of its weights
TIMM_RESULTS = ('timm results/results-imagenet.csv (huggingface/pytorch-image-models@aa4b585, '
                '2026-08-08)')


class Peer(NamedTuple):
    """A timm network compared with RepGhostNet: its ImageNet top-1 (%) and where that number
    is published. ``reference``: a re-implementation of RepGhostNet itself (timed, but not a
    peer on the Pareto front)."""
    timm_name: str
    top1: float
    source: str
    reference: bool = False


#: the peers, built by timm without weights and timed in their deployed form
#: (``timm.utils.reparameterize_model``: MobileOne, GhostNetV3, RepViT, FastViT fuse their
#: branches; the others have nothing to fuse)
PEERS = {
    'GhostNet 1.0x': Peer('ghostnet_100', 73.96, f'{TIMM_RESULTS}: ghostnet_100.in1k, 224 px'),
    'GhostNet 1.3x': Peer('ghostnet_130', 75.7, 'GhostNet paper (Han et al., CVPR 2020), '
                          'Table 7 (timm has no weights)'),
    'GhostNetV2 1.0x': Peer('ghostnetv2_100', 75.19,
                            f'{TIMM_RESULTS}: ghostnetv2_100.in1k, 224 px'),
    'GhostNetV3 1.0x': Peer('ghostnetv3_100', 76.94,
                            f'{TIMM_RESULTS}: ghostnetv3_100.in1k, 224 px'),
    'MobileNetV2 1.0x': Peer('mobilenetv2_100', 72.91,
                             f'{TIMM_RESULTS}: mobilenetv2_100.ra_in1k, 224 px'),
    'MobileNetV3-L 0.75x': Peer('mobilenetv3_large_075', 73.3,
                                'MobileNetV3 paper (Howard et al., ICCV 2019), Table 3 (timm '
                                'has no weights)'),
    'MobileNetV3-L 1.0x': Peer('mobilenetv3_large_100', 75.78,
                               f'{TIMM_RESULTS}: mobilenetv3_large_100.ra_in1k, 224 px'),
    'MobileNetV4-conv-small': Peer('mobilenetv4_conv_small', 73.76,
                                   f'{TIMM_RESULTS}: mobilenetv4_conv_small.e2400_r224_in1k, '
                                   '224 px'),
    'MobileNetV4-conv-medium': Peer('mobilenetv4_conv_medium', 79.09,
                                    f'{TIMM_RESULTS}: mobilenetv4_conv_medium.e500_r224_in1k, '
                                    '224 px'),
    'MobileOne-S0': Peer('mobileone_s0', 71.40,
                         f'{TIMM_RESULTS}: mobileone_s0.apple_in1k, 224 px'),
    'MobileOne-S1': Peer('mobileone_s1', 75.76,
                         f'{TIMM_RESULTS}: mobileone_s1.apple_in1k, 224 px'),
    'RepViT-M0.9': Peer('repvit_m0_9', 78.65,
                        f'{TIMM_RESULTS}: repvit_m0_9.dist_300e_in1k (distilled), 224 px'),
    'FastViT-T8': Peer('fastvit_t8', 76.18,
                       f'{TIMM_RESULTS}: fastvit_t8.apple_in1k, evaluated at 256 px (no 224 px '
                       'row; timed here at 224)'),
    'LCNet 1.0x': Peer('lcnet_100', 72.13, f'{TIMM_RESULTS}: lcnet_100.ra2_in1k, 224 px'),
    'timm RepGhostNet 1.0x': Peer('repghostnet_100', 74.21,
                                  f'{TIMM_RESULTS}: repghostnet_100.in1k, 224 px', True),
}
#: the peers of ``--quick``
QUICK_PEERS = ('GhostNet 1.0x', 'MobileNetV4-conv-small')
#: ImageNet top-1 (%) of every network of the ``models`` part
TOP1 = {**REPGHOST_TOP1, **{name: peer.top1 for name, peer in PEERS.items()}}
#: the runtimes of the ``models`` part, in table order (the INT8 ones quantize every layer)
RUNTIMES = ('pytorch', 'torch.compile', 'onnxruntime', 'openvino', 'onnxruntime int8',
            'openvino int8')


#: the versions written into the report
PACKAGES = ('torch', 'torchvision', 'onnxruntime', 'openvino', 'nncf', 'timm', 'mmcv', 'mmdet',
            'mmpretrain')
PARTS = ('models', 'layouts', 'table1', 'detectors', 'training', 'end2end')
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def benchmark_parser(description, out_dir, quick_help):
    """An argument parser with what every benchmark tool takes: ``--out-dir``, ``--runs``
    (timed runs a case) and ``--quick`` (``quick_help``: what it shrinks; 5 runs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--out-dir', default=out_dir)
    parser.add_argument('--runs', type=int, default=30, help='timed runs a case (>= 5)')
    parser.add_argument('--quick', action='store_true', help=quick_help)
    return parser


def parse_benchmark_args(parser, argv=None):
    """``parser``'s arguments; ``--runs`` below 5 is refused, ``--quick`` sets it to 5."""
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error(f'--runs must be >= 5, got {args.runs}')
    if args.quick:
        args.runs = 5
    return args


def parse_args(argv=None):
    parser = benchmark_parser(__doc__.split('\n\n')[0], 'work_dirs/benchmark',
                              'one small case of each part, 5 runs (for CI)')
    parser.add_argument('--parts', nargs='+',
                        default=list(PARTS), choices=list(PARTS))
    return parse_benchmark_args(parser, argv)


def build_classifier(width, **backbone_options):
    """The official-head ImageNet classifier of ``width`` (mmpretrain ``ImageClassifier``)."""
    from mmengine.config import Config
    cfg = repghostnet_classifier_cfg(width)
    cfg['backbone'].update(backbone_options)
    return build_model(Config(dict(model=cfg)))


def build_classifiers(quick):
    """(name, structure, model) for every network of the ``models`` part.

    BatchNorm statistics are calibrated on random batches first (:func:`calibrate_bn_`), so
    that activations stay O(1) through every network, as after training: random-init
    statistics let some networks' activations grow to 1e9 or shrink towards denormals, which
    is not the function a deployed network computes.
    """
    import timm
    widths = ['1.0x'] if quick else list(ARCH_WIDTHS)
    for width in widths:
        model = calibrate_bn_(build_classifier(width), (2, 3, 224, 224))
        deployed = copy.deepcopy(model)
        reparameterize_model(deployed, logger='silent')
        yield f'RepGhostNet {width}', 'train', model
        yield f'RepGhostNet {width}', 'deployed', deployed
    for name in QUICK_PEERS if quick else PEERS:
        model = calibrate_bn_(timm.create_model(PEERS[name].timm_name, pretrained=False),
                              (2, 3, 224, 224))
        deployed = timm.utils.reparameterize_model(model)
        fused = sum(1 for _ in deployed.modules()) < sum(1 for _ in model.modules())
        yield name, 'deployed' if fused else '-', deployed


def ort_session(path, threads, profile_prefix=None, level='ORT_ENABLE_ALL', spinning=False):
    """An onnxruntime CPU session of ``path`` on ``threads`` threads (optionally profiling),
    at the graph optimization ``level`` (a ``GraphOptimizationLevel`` name; ALL, the default,
    includes the NCHWc layout transformer).

    ``spinning``: idle intra-op worker threads spin (onnxruntime's default) instead of
    sleeping. Off by default: with many sessions timed round-robin, spinning pools of the idle
    sessions would steal the cores of the one being timed.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.log_severity_level = 3  # not a warning per unused initializer of a timm graph
    options.add_session_config_entry('session.intra_op.allow_spinning',
                                     '1' if spinning else '0')
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def onnx_session(model, path, shape, threads, annotate=True):
    export_onnx(model, path, shape, overwrite=True, annotate=annotate)
    return ort_session(path, threads)


def openvino_core():
    """``openvino.Core()``, or None (with a note) when the package is not installed."""
    try:
        import openvino
    except ImportError:
        print('OpenVINO is not installed: its columns are skipped (pip install openvino, or '
              'pip install -r requirements/deploy.txt)', flush=True)
        return None
    return openvino.Core()


def openvino_config(threads):
    """CPU plugin properties (OpenVINO 2026.4 names): ``threads`` threads, one stream for
    latency, fp32 (the default on a bf16-capable CPU is bf16) and no pinning of the threads to
    cores (pinned, a 1-thread model waits for whatever else runs on its core: on this shared
    machine, busy with other work, that once doubled the median; idle, it made no
    difference)."""
    return {'INFERENCE_NUM_THREADS': threads, 'PERFORMANCE_HINT': 'LATENCY',
            'INFERENCE_PRECISION_HINT': 'f32', 'ENABLE_CPU_PINNING': False}


def openvino_runner(core, path, shape, threads, static=True):
    """``feed -> list of outputs`` of ``path`` compiled by OpenVINO for the CPU.

    ``static``: the input is reshaped to ``shape`` before compiling (the .onnx files have
    dynamic batch, height and width).
    """
    import openvino
    model = core.read_model(path)
    if static:
        model.reshape({model.input(0).get_any_name(): openvino.PartialShape(list(shape))})
    compiled = core.compile_model(model, 'CPU', openvino_config(threads))
    precision = compiled.get_property('INFERENCE_PRECISION_HINT')
    if precision != openvino.Type.f32:
        raise RuntimeError(f'OpenVINO compiled {path} with precision {precision}, not f32')
    request = compiled.create_infer_request()

    def run(feed):
        return list(request.infer(feed).values())
    return run


def check_close(outputs, reference, what, rtol=1e-4):
    """Refuse to time a runtime whose outputs differ from onnxruntime's (scale-relative)."""
    for out, ref in zip(outputs, reference):
        if out.shape != ref.shape:
            raise RuntimeError(f'{what}: output shape {out.shape}, onnxruntime {ref.shape}')
        scale = max(float(np.abs(ref).max()), 1e-12)
        diff = float(np.abs(out - ref).max())
        if diff > rtol * scale:
            raise RuntimeError(f'{what} differs from onnxruntime by {diff:.3g} (output scale '
                               f'{scale:.3g}): not timing different functions')


#: one core's measured FP32 peak: this conv in onnxruntime, 1 thread, timed in the same
#: round-robin as the networks (2.3e8 FLOPs a call; it runs faster than /proc/cpuinfo's clock
#: allows, and as fast as a 1024^3 MatMul)
PEAK_PROBE = 'peak probe: dense 3x3 conv, 128 -> 128 channels, 28x28'


def peak_probe(threads):
    """(run, flops): :data:`PEAK_PROBE` as an onnxruntime session on ``threads`` threads."""
    from onnx import TensorProto, helper, numpy_helper
    channels, size = 128, 28
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.03
    shape = [1, channels, size, size]
    graph = helper.make_graph(
        [helper.make_node('Conv', ['x', 'w'], ['y'], pads=[1, 1, 1, 1])], 'peak_probe',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(weight, 'w')])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    session = ort_session(model.SerializeToString(), threads)
    feed = {'x': rng.standard_normal(shape).astype(np.float32)}
    return (lambda: session.run(None, feed)), 2 * channels * channels * 9 * size * size


def time_models(models, shape, threads, runs, tmp_dir, openvino=None, dynamic_too=(),
                compiled=(), int8=(), notes=None, plain_export=(), extra=None):
    """({(key, backend): Latency}, {key: torch.compile seconds}) for ``models`` ({key:
    model}) on one ``shape`` input, all timed interleaved (one call of each, round-robin), so
    every ratio in a table compares measurements taken over the same minutes.

    Every model runs in PyTorch eager and onnxruntime, and in OpenVINO when ``openvino`` (a
    Core) is given; the keys in ``dynamic_too`` also in OpenVINO with dynamic input shapes;
    the keys in ``compiled`` also with ``torch.compile`` (Inductor, freezing; the first call,
    which compiles, is timed on its own); the keys in ``int8`` also as INT8 graphs, every
    layer quantized (onnxruntime: QDQ, uint8 activations, per-channel int8 weights;
    OpenVINO: NNCF), calibrated on 8 random batches. A network that one runtime cannot
    compile or quantize loses that cell, with the reason appended to ``notes``. ONNX files
    come from ``export_onnx``, with symbolic shapes recorded, except for the keys in
    ``plain_export``: the plain dynamic-shape ``torch.onnx.export`` their users would run.
    ``extra``: more {(key, backend): callable} timed in the same round-robin.
    """
    import onnx

    from mmrepghost.deploy.inductor import compile_inductor
    torch.set_num_threads(threads)
    x = torch.randn(*shape)
    feed = {'images': x.numpy()}
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, ) + tuple(shape[1:])).astype(np.float32) for _ in range(8)]
    notes = [] if notes is None else notes
    fns, compile_s, entries = {}, {}, {}
    for i, (key, model) in enumerate(models.items()):
        wrapper = RawOutputs(model).eval()
        fns[(key, 'pytorch')] = lambda w=wrapper: _no_grad_call(w, x)
        if key in compiled:
            try:
                entry = own_entry(wrapper, i)
                run = compile_inductor(entry)
                start = time.perf_counter()
                outputs = run(x)  # compiles
                compile_s[key] = time.perf_counter() - start
                entries[key] = entry.__code__
                check_close([t.numpy() for t in outputs],
                            [t.numpy() for t in _no_grad_call(wrapper, x)],
                            f'{key} compiled', rtol=1e-3)
                fns[(key, 'torch.compile')] = lambda run=run: run(x)
            except Exception as e:  # noqa: BLE001 -- one lost cell, recorded
                notes.append(f'torch.compile failed for {key} at {shape}: '
                             f'{type(e).__name__}: {str(e).splitlines()[0][:200]}')
        path = osp.join(tmp_dir, f'model{i}.onnx')
        session = onnx_session(model, path, shape, threads, key not in plain_export)
        fns[(key, 'onnxruntime')] = lambda s=session: s.run(None, feed)
        reference = session.run(None, feed)
        if openvino is not None:
            for static in (True, False) if key in dynamic_too else (True, ):
                run = openvino_runner(openvino, path, shape, threads, static)
                check_close(run(feed), reference, f'{key} in OpenVINO')
                backend = 'openvino' if static else 'openvino (dynamic shape)'
                fns[(key, backend)] = lambda run=run: run(feed)
        if key in int8:
            fns.update(int8_runners(key, onnx.load(path), osp.join(tmp_dir, f'int8_{i}'),
                                    calib, feed, threads, openvino, notes))
    timed = measure_interleaved({**fns, **(extra or {})}, runs)
    check_one_graph_each(entries)
    return timed, compile_s


def check_one_graph_each(entries):
    """Refuse a torch.compile column in which a network was compiled more than once (a
    recompilation while timed) or fell back to eager (no graph): ``entries``: {key: the code
    object compiled for it}."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list
    for key, code in entries.items():
        graphs = len(_debug_get_cache_entry_list(code))
        if graphs != 1:
            raise RuntimeError(f'torch.compile kept {graphs} graphs for {key}, not 1: its '
                               'column would not time one compiled graph')


def own_entry(module, tag):
    """``x -> module(x)`` as a function with a code object of its own, to compile.

    Dynamo keeps the graphs it compiled in one cache per code object, and a call checks the
    entries' guards one after the other. Compiled directly, every network would enter through
    ``nn.Module.__call__``'s code: each call would first fail the guards of the other
    networks compiled in this process (a deployment compiles one network), and past
    ``torch._dynamo.config.recompile_limit`` (8) graphs the rest would silently run eagerly.
    """
    def entry(x):
        return module(x)

    code = entry.__code__.replace(co_name='entry_' + re.sub(r'\W', '_', str(tag)))
    return types.FunctionType(code, entry.__globals__, code.co_name, None, entry.__closure__)


def _no_grad_call(module, x):
    with torch.no_grad():
        return module(x)


def int8_runners(key, proto, stem, calib, feed, threads, openvino, notes):
    """{(key, 'onnxruntime int8' / 'openvino int8'): callable} of ``proto`` with every layer
    quantized (see :func:`time_models`); a failure costs its cell and is noted. The INT8
    graphs are written to ``<stem>_{ort,ov}_int8.onnx`` and reused from there when they exist
    (the graphs have a dynamic batch: one quantization serves every batch size)."""
    import onnx

    from mmrepghost.deploy.quantize.onnxruntime_backend import quantize_every_layer
    runners = {}
    try:
        path = f'{stem}_ort_int8.onnx'
        if not osp.exists(path):
            onnx.save(quantize_every_layer(proto, 'images', calib), path)
        session = ort_session(path, threads)
        runners[(key, 'onnxruntime int8')] = lambda: session.run(None, feed)
    except Exception as e:  # noqa: BLE001
        notes.append(f'onnxruntime INT8 failed for {key}: {type(e).__name__}: {e}'[:300])
    if openvino is None:
        return runners
    try:
        from mmrepghost.deploy.quantize.openvino_backend import quantize_graph_nncf
        path = f'{stem}_ov_int8.onnx'
        if not osp.exists(path):
            onnx.save(quantize_graph_nncf(proto, calib), path)
        run = openvino_runner(openvino, path, feed['images'].shape, threads)
        runners[(key, 'openvino int8')] = lambda: run(feed)
    except ImportError as e:
        notes.append(f'OpenVINO INT8 skipped: {e}')
    except Exception as e:  # noqa: BLE001
        notes.append(f'OpenVINO INT8 (NNCF) failed for {key}: {type(e).__name__}: {e}'[:300])
    return runners


def run_models(args, rows, tmp_dir, notes):
    """Every network x runtime, 1 thread, batch 1 and 8 (one interleaved table per batch)."""
    models = {(name, structure): model
              for name, structure, model in build_classifiers(args.quick)}
    ours = ('RepGhostNet 1.0x', 'deployed')
    # --quick compiles and quantizes ours only (the peers' compilation would double its time)
    deployed = [ours] if args.quick else [key for key in models if key[1] != 'train']
    probe, probe_flops = peak_probe(1)
    for batch in [1] if args.quick else [1, 8]:
        timed, compile_s = time_models(
            models, (batch, 3, 224, 224), 1, args.runs, tmp_dir, args.openvino,
            dynamic_too=[ours], compiled=deployed, int8=deployed, notes=notes,
            plain_export=[key for key in models if key[0] not in REPGHOST_TOP1],
            extra={((PEAK_PROBE, '-'), 'onnxruntime'): probe})
        for ((name, structure), backend), lat in timed.items():
            row = dict(part='peak' if name == PEAK_PROBE else 'models', model=name,
                       structure=structure, backend=backend, threads=1, batch=batch,
                       input='224x224', median_ms=lat.median_ms, min_ms=lat.min_ms,
                       max_ms=lat.max_ms)
            if name == PEAK_PROBE:
                row.update(input='1x128x28x28',
                           gflops=round(probe_flops / lat.median_ms / 1e6, 1))
            if backend == 'torch.compile':
                row['compile_s'] = round(compile_s[(name, structure)], 1)
            rows.append(row)
            print(f'{name} [{structure}] {backend} batch={batch}: {lat.median_ms:.2f} ms',
                  flush=True)


def run_layouts(args, thread_counts, rows):
    """Train structure vs deployed in PyTorch eager, NCHW and channels-last weights."""
    model = build_classifier('1.0x').eval()
    deployed = copy.deepcopy(model)
    reparameterize_model(deployed, logger='silent')
    wrappers = {}
    for structure, net in (('train', model), ('deployed', deployed)):
        for layout in ('NCHW', 'channels_last'):
            copied = copy.deepcopy(net)
            if layout == 'channels_last':
                copied = copied.to(memory_format=torch.channels_last)
            wrappers[(structure, layout)] = RawOutputs(copied).eval()
    check_same_outputs(wrappers)
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for batch in [1] if args.quick else [1, 8]:
            x = torch.randn(batch, 3, 224, 224)
            with torch.no_grad():
                timed = measure_interleaved(
                    {key: (lambda w=w: w(x)) for key, w in wrappers.items()}, args.runs)
            for (structure, layout), lat in timed.items():
                rows.append(dict(part='layouts', model='RepGhostNet 1.0x',
                                 structure=f'{structure}, {layout}', backend='pytorch',
                                 threads=threads, batch=batch, input='224x224',
                                 median_ms=lat.median_ms, min_ms=lat.min_ms,
                                 max_ms=lat.max_ms))
                print(f'RepGhostNet 1.0x [{structure}, {layout}] pytorch threads={threads} '
                      f'batch={batch}: {lat.median_ms:.2f} ms', flush=True)


def check_same_outputs(wrappers, rtol=1e-4):
    """Refuse to time networks that do not compute the same function (scale-relative)."""
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        outputs = {key: w(x)[0] for key, w in wrappers.items()}
    reference = next(iter(outputs.values()))
    scale = reference.abs().max().item()
    for key, out in outputs.items():
        diff = (out - reference).abs().max().item()
        if diff > rtol * scale:
            raise RuntimeError(f'{key} differs from {next(iter(outputs))} by {diff:.3g} '
                               f'(output scale {scale:.3g}): not timing different networks')


class _RecordConcats(TorchFunctionMode):
    """Within the ``with`` block, record the input shapes of every ``torch.cat`` call."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.cat:
            self.shapes.append([tuple(t.shape) for t in args[0]])
        return func(*args, **(kwargs or {}))


def ghost_concat_shapes():
    """The input shapes of the 32 ``torch.cat`` calls of timm's GhostNet 1.0x (batch 1)."""
    import timm
    model = timm.create_model('ghostnet_100', pretrained=False).eval()
    with torch.no_grad(), _RecordConcats() as record:
        model(torch.randn(1, 3, 224, 224))
    return record.shapes


def run_table1(args, thread_counts, rows):
    shapes = ghost_concat_shapes()
    batches = [1] if args.quick else [1, 2, 8, 32]
    torch.set_num_threads(1)
    for batch in batches:
        pairs = [[torch.randn(batch, *s[1:]) for s in pair] for pair in shapes]
        timed = measure_interleaved({
            'concat': lambda: [torch.cat(p, 1) for p in pairs],
            'add': lambda: [p[0] + p[1] for p in pairs]}, args.runs)
        for op, lat in timed.items():
            rows.append(dict(part='table1', model=f'GhostNet 1.0x: {len(shapes)} ops',
                             structure=op, backend='pytorch', threads=1, batch=batch,
                             input='224x224', median_ms=lat.median_ms, min_ms=lat.min_ms,
                             max_ms=lat.max_ms))
        cat, add = timed['concat'].median_ms, timed['add'].median_ms
        print(f'Table 1, batch {batch}: concat {cat:.3f} ms, add {add:.3f} ms '
              f'({cat / add:.2f}x)', flush=True)


def run_detectors(args, thread_counts, rows, tmp_dir):
    from mmengine.config import Config
    configs = {
        'RetinaNet-RepGhostNet 1.3x': osp.join(ROOT, 'configs/retinanet/repghost_1_3x.py'),
        'RetinaNet-MobileNetV2': osp.join(ROOT,
                                          'configs/retinanet/mobilenetv2_1_0x_tiny-coco.py'),
    }
    sizes = [(320, 320)] if args.quick else [(320, 320), (800, 1344)]
    models = {}
    for name, config in configs.items():
        cfg = Config.fromfile(config)
        cfg.model.backbone.init_cfg = None
        if 'MobileNetV2' in name:  # the full-size RetinaNet head and FPN, as for RepGhostNet
            full = Config.fromfile(configs['RetinaNet-RepGhostNet 1.3x'])
            cfg.model.neck.out_channels = full.model.neck.out_channels
            cfg.model.bbox_head = full.model.bbox_head
        models[name] = build_model(cfg).eval()
        reparameterize_model(models[name], logger='silent')
    for threads in thread_counts:
        for height, width in sizes:
            timed, _ = time_models(models, (1, 3, height, width), threads, args.runs,
                                   tmp_dir, None if args.quick else args.openvino)
            for (name, backend), lat in timed.items():
                rows.append(dict(part='detectors', model=name, structure='deployed',
                                 backend=backend, threads=threads, batch=1,
                                 input=f'{height}x{width}', median_ms=lat.median_ms,
                                 min_ms=lat.min_ms, max_ms=lat.max_ms))
                print(f'{name} {backend} threads={threads} {height}x{width}: '
                      f'{lat.median_ms:.1f} ms', flush=True)


#: the training part's variants (``--quick``: the eager ones)
TRAINING_VARIANTS = ('eager fp32', 'eager bf16 autocast', 'torch.compile fp32',
                     'torch.compile bf16 autocast')


def run_training(args, thread_counts, rows):
    """A training step (forward, cross-entropy, backward, SGD update) of the RepGhostNet 1.0x
    classifier with vs without the BN re-parameterization branch, in PyTorch eager and with
    ``torch.compile`` (Inductor; forward and backward compiled, the optimizer eager), each in
    fp32 and under bf16 autocast; all eight timed interleaved."""
    import torch.nn.functional as F
    torch.set_num_threads(max(thread_counts))
    batch = 2 if args.quick else 8
    x = torch.randn(batch, 3, 224, 224)
    labels = torch.arange(batch) % 1000
    steps = {}
    for variant in TRAINING_VARIANTS[:2] if args.quick else TRAINING_VARIANTS:
        for branches in (('bn', ), ()):
            torch.manual_seed(0)
            model = build_classifier('1.0x', reparam_branches=branches).train()
            forward = torch.compile(own_entry(model, f'{variant}_{len(steps)}')) \
                if 'compile' in variant else model
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

            def step(forward=forward, optimizer=optimizer, bf16='bf16' in variant):
                optimizer.zero_grad()
                with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(forward(x), labels)
                loss.backward()
                optimizer.step()

            name = 'with BN branch (paper)' if branches else 'no re-param branch'
            steps[f'{name}, {variant}'] = step
    for name, lat in measure_interleaved(steps, args.runs, warmup=3).items():
        rows.append(dict(part='training', model='RepGhostNet 1.0x step', structure=name,
                         backend='pytorch', threads=max(thread_counts), batch=batch,
                         input='224x224', median_ms=lat.median_ms, min_ms=lat.min_ms,
                         max_ms=lat.max_ms))
        print(f'training step {name}: {lat.median_ms:.1f} ms', flush=True)


#: the ``end2end`` part's RetinaNet test_cfg.score_thr (mmdet's default): with the head scaled
#: as a trained one's (:func:`build_end2end_detector`), ~3000 candidates enter NMS at 320x320
#: and every image keeps max_per_img=100 detections, so NMS has real work to do
END2END_SCORE_THR = 0.05
END2END_CONFIG = 'configs/retinanet/repghost_1_0x_tiny-coco.py'


@torch.no_grad()
def calibrate_bn_(model, input_shape, steps=2, seed=0):
    """BN running statistics of random batches, as after training (activations stay O(1))."""
    gen = torch.Generator().manual_seed(seed)
    for bn in (m for m in model.modules() if isinstance(m, _BatchNorm)):
        bn.reset_running_stats()
        bn.momentum = None  # the average over the calibration batches
    model.train()
    for _ in range(steps):
        model(torch.randn(*input_shape, generator=gen))
    return model.eval()


@torch.no_grad()
def build_end2end_detector():
    """RetinaNet-RepGhostNet 1.0x (64-channel FPN/head), random weights, deployed.

    BN statistics calibrated on random batches; the head's output convolutions scaled to the
    spread of a trained head (classification logits ~N(-4.6, 1): mmdet's prior bias for
    p=0.01; box deltas ~0.2), so that scores are not all equal and boxes not all anchors.
    """
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, END2END_CONFIG))
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.score_thr = END2END_SCORE_THR
    with torch.random.fork_rng():  # the same weights every run, the global seed untouched
        torch.manual_seed(0)
        model = build_model(cfg)
    calibrate_bn_(RawOutputs(model), (2, 3, 128, 128))
    head = model.bbox_head
    head.retina_cls.weight.mul_(0.25)
    head.retina_cls.bias.fill_(-math.log(99))
    head.retina_reg.weight.mul_(0.04)
    head.retina_reg.bias.zero_()
    reparameterize_model(model, logger='silent')
    return model.eval()


class NumpyDensePostprocess:
    """mmdet's ``predict_by_feat`` of an anchor head with sigmoid scores and
    ``DeltaXYWHBBoxCoder`` (RetinaNet), in numpy, on the raw graph's outputs.

    Per level: the ``nms_pre`` best (prior, class) scores above ``score_thr`` (selected on the
    logits, found by threshold then ``argpartition`` in the maps' own layout, so only the
    selected ones pass through the sigmoid), decoded as mmdet's ``delta2bbox``; boxes clipped
    to the input (as the end-to-end graph does), ``min_bbox_size``, class-aware greedy NMS
    (mmdet's class offset trick) stopping at ``max_per_img``. The anchors of each feature-map
    size are made once by the head's ``prior_generator`` and cached, as a runtime would.
    """

    def __init__(self, head):
        coder = head.bbox_coder
        if (type(coder).__name__ != 'DeltaXYWHBBoxCoder' or coder.add_ctr_clamp
                or not head.use_sigmoid_cls):
            raise TypeError('NumpyDensePostprocess decodes sigmoid scores and '
                            'DeltaXYWHBBoxCoder without add_ctr_clamp (RetinaNet)')
        cfg = head.test_cfg
        self.prior_generator = head.prior_generator
        self.classes = head.cls_out_channels
        self.anchors = head.num_base_priors
        self.means = np.asarray(coder.means, np.float32)
        self.stds = np.asarray(coder.stds, np.float32)
        self.max_ratio = abs(math.log(16 / 1000))  # delta2bbox's wh_ratio_clip
        self.score_thr = float(cfg.get('score_thr', 0))
        self.nms_pre = int(cfg.get('nms_pre', -1))
        self.iou_thr = float(cfg['nms']['iou_threshold'])
        self.max_per_img = int(cfg['max_per_img'])
        self.min_bbox_size = float(cfg.get('min_bbox_size', -1))
        thr = min(max(self.score_thr, 1e-12), 1 - 1e-7)
        self.logit_thr = math.log(thr / (1 - thr)) - 1e-3  # loose: the exact test is later
        self._priors = {}

    def priors(self, sizes):
        if sizes not in self._priors:
            self._priors[sizes] = [p.numpy() for p in self.prior_generator.grid_priors(
                [torch.Size(s) for s in sizes], dtype=torch.float32, device='cpu')]
        return self._priors[sizes]

    def __call__(self, outputs, height, width):
        """[(boxes (K, 4), scores (K, ), labels (K, ))] per image, best first."""
        levels = len(outputs) // 2
        cls_maps, reg_maps = outputs[:levels], outputs[levels:]
        priors = self.priors(tuple(m.shape[-2:] for m in cls_maps))
        return [self.image(n, cls_maps, reg_maps, priors, height, width)
                for n in range(cls_maps[0].shape[0])]

    def image(self, n, cls_maps, reg_maps, priors, height, width):
        all_boxes, all_scores, all_labels = [], [], []
        for cls_map, reg_map, level_priors in zip(cls_maps, reg_maps, priors):
            positions = cls_map.shape[2] * cls_map.shape[3]
            logits = cls_map[n].reshape(-1)  # (anchor, class, y, x) order
            index = np.flatnonzero(logits > self.logit_thr)
            if 0 < self.nms_pre < index.size:
                cut = index.size - self.nms_pre
                index = index[np.argpartition(logits[index], cut)[cut:]]
            scores = 1 / (1 + np.exp(-logits[index]))
            keep = scores > self.score_thr
            index, scores = index[keep], scores[keep]
            channel, position = np.divmod(index, positions)
            anchor, label = np.divmod(channel, self.classes)
            deltas = reg_map[n].reshape(self.anchors, 4, positions)[anchor, :, position]
            all_boxes.append(self.decode(level_priors[position * self.anchors + anchor],
                                         deltas))
            all_scores.append(scores)
            all_labels.append(label)
        boxes = np.concatenate(all_boxes)
        boxes = np.minimum(np.maximum(boxes, 0),
                           np.asarray([width, height, width, height], np.float32))
        scores, labels = np.concatenate(all_scores), np.concatenate(all_labels)
        if self.min_bbox_size >= 0:
            wide = ((boxes[:, 2] - boxes[:, 0] > self.min_bbox_size)
                    & (boxes[:, 3] - boxes[:, 1] > self.min_bbox_size))
            boxes, scores, labels = boxes[wide], scores[wide], labels[wide]
        self.nms_candidates = len(scores)  # of the last image, for the report
        keep = self.nms(boxes, scores, labels)
        return boxes[keep], scores[keep], labels[keep]

    def decode(self, priors, deltas):
        """mmdet's ``delta2bbox`` (no clipping here; the caller clips to the input)."""
        deltas = deltas * self.stds + self.means
        centers = (priors[:, :2] + priors[:, 2:]) * 0.5
        sizes = priors[:, 2:] - priors[:, :2]
        centers = centers + sizes * deltas[:, :2]
        sizes = sizes * np.exp(np.clip(deltas[:, 2:], -self.max_ratio, self.max_ratio))
        return np.concatenate([centers - sizes * 0.5, centers + sizes * 0.5], axis=1)

    def nms(self, boxes, scores, labels):
        """Class-aware greedy NMS: indices of the kept boxes, best first, <= max_per_img."""
        if not scores.size:
            return np.zeros(0, np.int64)
        order = np.argsort(-scores, kind='stable')
        shifted = boxes[order] + (labels[order] * (boxes.max() + 1)).astype(
            np.float32)[:, None]
        x1, y1, x2, y2 = (np.ascontiguousarray(c) for c in shifted.T)
        areas = (x2 - x1) * (y2 - y1)
        suppressed = np.zeros(order.size, bool)
        keep = []
        for i in range(order.size):  # contiguous slices of the later boxes: no gathers
            if suppressed[i]:
                continue
            keep.append(i)
            if len(keep) == self.max_per_img:
                break
            w = np.minimum(x2[i], x2[i + 1:]) - np.maximum(x1[i], x1[i + 1:])
            h = np.minimum(y2[i], y2[i + 1:]) - np.maximum(y1[i], y1[i + 1:])
            inter = np.maximum(w, 0) * np.maximum(h, 0)
            suppressed[i + 1:] |= inter > self.iou_thr * (areas[i] + areas[i + 1:] - inter)
        return order[np.asarray(keep, np.int64)]


def check_detections(dets, labels, reference, what, box_atol=1e-3, score_atol=1e-4):
    """Refuse to time an end-to-end graph whose ``dets``/``labels`` differ from ``reference``
    (the numpy post-processing): per image the same count and labels, boxes within
    ``box_atol`` pixels, scores within ``score_atol``. Returns the detections per image."""
    counts = []
    for n, (boxes, scores, ref_labels) in enumerate(reference):
        count = int((labels[n] >= 0).sum())
        problem = None
        if count != len(scores):
            problem = f'{count} detections, numpy {len(scores)}'
        elif not np.array_equal(labels[n, :count], ref_labels):
            problem = 'labels differ'
        elif count and np.abs(dets[n, :count, :4] - boxes).max() > box_atol:
            problem = f'boxes differ by {np.abs(dets[n, :count, :4] - boxes).max():.3g} px'
        elif count and np.abs(dets[n, :count, 4] - scores).max() > score_atol:
            problem = f'scores differ by {np.abs(dets[n, :count, 4] - scores).max():.3g}'
        if problem:
            raise RuntimeError(f'{what}: image {n}: {problem} -- the end-to-end graph and the '
                               'numpy post-processing disagree; not timing them')
        counts.append(count)
    return counts


def ort_profiles(cases, runs, tmp_dir):
    """{name: {op type: (ms per run, nodes)}} of ``runs`` profiled 1-thread onnxruntime calls
    of each ``name: (path, feed)`` of ``cases``, interleaved."""
    sessions = {name: (ort_session(path, 1, osp.join(tmp_dir, f'profile_{name}')), feed)
                for name, (path, feed) in cases.items()}
    for _ in range(runs):
        for session, feed in sessions.values():
            session.run(None, feed)
    profiles = {}
    for name, (session, _) in sessions.items():
        profile = session.end_profiling()
        kernels = kernel_times(profile)
        os.remove(profile)
        totals, nodes = {}, {}
        for kernel, (op, ms) in kernels.items():
            totals[op] = totals.get(op, 0.0) + sum(ms) / runs
            nodes[op] = nodes.get(op, 0) + 1
        profiles[name] = {op: (ms, nodes[op]) for op, ms in totals.items()}
    return profiles


def profile_lines(end2end, raw):
    """The end-to-end graph's operator time beyond the raw graph's: per operator type with
    nodes the raw graph lacks, largest first; the rest (the same nodes in both graphs) differs
    by noise and layout only and is summed."""
    none = (0.0, 0)
    extra = {op: (ms - raw.get(op, none)[0], n - raw.get(op, none)[1])
             for op, (ms, n) in end2end.items()}
    added = {op: v for op, v in extra.items() if v[1] > 0}
    same = sum(ms for op, (ms, _) in extra.items() if op not in added)
    ranked = sorted(added.items(), key=lambda item: -item[1][0])
    parts = ', '.join(f'{op} {ms:.2f} ms ({n} nodes)' for op, (ms, n) in ranked[:8])
    if len(ranked) > 8:
        parts += (f', {len(ranked) - 8} more types {sum(v[0] for _, v in ranked[8:]):.2f} ms '
                  f'({sum(v[1] for _, v in ranked[8:])} nodes)')
    return [f'end2end profile (onnxruntime, 1 thread, operator time per run, interleaved): '
            f'raw graph {sum(ms for ms, _ in raw.values()):.2f} ms, end-to-end graph '
            f'{sum(ms for ms, _ in end2end.values()):.2f} ms; the post-processing nodes by '
            f'operator type: {sum(ms for ms, _ in added.values()):.2f} ms = {parts}; the '
            f'nodes both graphs have: {same:+.2f} ms']


def run_end2end(args, rows, tmp_dir, notes):
    """End-to-end graph vs raw graph + numpy post-processing (RetinaNet, 1 thread, batch 1).

    Appends what the run found (candidates, detections, the profile) to ``notes``.
    """
    size = 128 if args.quick else 320
    shape = (1, 3, size, size)
    torch.set_num_threads(1)
    model = build_end2end_detector()
    module = end2end_module(model)
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    end2end_path, raw_path = (osp.join(tmp_dir, f'{name}.onnx') for name in ('e2e', 'raw'))
    export_graph(module, end2end_path, images, module.output_names)
    export_onnx(model, raw_path, shape, overwrite=True)
    postprocess = NumpyDensePostprocess(model.bbox_head)
    feed_e2e, feed_raw = {'input': images.numpy()}, {'images': images.numpy()}
    end2end, raw = ort_session(end2end_path, 1), ort_session(raw_path, 1)

    def raw_numpy():
        return postprocess(raw.run(None, feed_raw), size, size)

    reference = raw_numpy()
    counts = check_detections(*end2end.run(None, feed_e2e), reference,
                              'end-to-end graph in onnxruntime')
    candidates, checked = postprocess.nms_candidates, ['onnxruntime']
    cases = {('end-to-end graph', 'onnxruntime'): lambda: end2end.run(None, feed_e2e),
             ('raw graph + numpy post-processing', 'onnxruntime'): raw_numpy,
             ('raw graph only', 'onnxruntime'): lambda: raw.run(None, feed_raw)}
    if args.openvino is not None:
        ov_end2end = openvino_runner(args.openvino, end2end_path, shape, 1)
        ov_raw = openvino_runner(args.openvino, raw_path, shape, 1)
        check_detections(*ov_end2end(feed_e2e), reference, 'end-to-end graph in OpenVINO')
        check_detections(*ov_end2end(feed_e2e), postprocess(ov_raw(feed_raw), size, size),
                         'raw graph + numpy post-processing in OpenVINO')
        checked.append('OpenVINO')
        cases[('end-to-end graph', 'openvino')] = lambda: ov_end2end(feed_e2e)
        cases[('raw graph + numpy post-processing', 'openvino')] = \
            lambda: postprocess(ov_raw(feed_raw), size, size)
    notes.append(f'end2end, {size}x{size}: score_thr {postprocess.score_thr}: {candidates} '
                 f'candidates enter NMS, {counts[0]} detections; the end-to-end graph\'s '
                 'detections agree with the numpy post-processing\'s (same count and labels, '
                 f'boxes within 1e-3 px) in {" and ".join(checked)}')
    print(notes[-1], flush=True)
    for (structure, backend), lat in measure_interleaved(cases, args.runs).items():
        rows.append(dict(part='end2end', model='RetinaNet-RepGhostNet 1.0x',
                         structure=structure, backend=backend, threads=1, batch=1,
                         input=f'{size}x{size}', median_ms=lat.median_ms, min_ms=lat.min_ms,
                         max_ms=lat.max_ms))
        print(f'end2end {structure} {backend}: {lat.median_ms:.2f} ms', flush=True)
    profiles = ort_profiles({'e2e': (end2end_path, feed_e2e), 'raw': (raw_path, feed_raw)},
                            3 if args.quick else args.runs, tmp_dir)
    notes.extend(profile_lines(profiles['e2e'], profiles['raw']))


def single_core_peak_gflops():
    """(GFLOP/s, how): FP32 FMA lanes x 2 pipes x 2 FLOPs x clock, from /proc/cpuinfo."""
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read()
    except OSError:
        return None, 'no /proc/cpuinfo'
    flags = set(next((line.split(':', 1)[1].split() for line in info.splitlines()
                      if line.startswith('flags')), []))
    mhz = [float(line.split(':', 1)[1]) for line in info.splitlines()
           if line.startswith('cpu MHz')]
    lanes = 16 if 'avx512f' in flags else 8 if 'avx2' in flags else 4
    if not mhz or 'fma' not in flags:
        return None, 'clock or FMA unknown'
    ghz = max(mhz) / 1000
    return lanes * 2 * 2 * ghz, f'{lanes} FP32 lanes x 2 FMA pipes x 2 FLOPs x {ghz:.2f} GHz'


def median_ms(rows, **match):
    """The median of the one row matching every ``key=value`` of ``match``, else None."""
    found = [r['median_ms'] for r in rows if all(r[k] == v for k, v in match.items())]
    return found[0] if len(found) == 1 else None


def summary_lines(rows):
    """The ratios the benchmark exists for, and the deployed 1.0x GFLOP/s against the peak."""
    lines = []

    def ratio(label, numerator, denominator):
        if numerator is not None and denominator is not None:
            lines.append(f'{label}: {numerator / denominator:.2f}x '
                         f'({numerator:.2f} / {denominator:.2f} ms)')

    for batch in (1, 8):
        for backend in RUNTIMES:
            case = dict(part='models', backend=backend, threads=1, batch=batch)
            ours = median_ms(rows, model='RepGhostNet 1.0x', structure='deployed', **case)
            for peer in ('GhostNet 1.0x', 'MobileNetV4-conv-small', 'timm RepGhostNet 1.0x'):
                ratio(f'{backend}, 1 thread, batch {batch}: deployed RepGhostNet 1.0x / {peer}',
                      ours, median_ms(rows, model=peer, **case))
            points = front_points(rows, backend, batch)
            widths = {n: v for n, v in points.items() if n in REPGHOST_TOP1}
            for peer in ('MobileNetV4-conv-small', 'MobileNetV4-conv-medium'):
                if peer in points and len(widths) > 1:
                    ratio(f'{backend}, 1 thread, batch {batch}: RepGhostNet at {peer}\'s top-1 '
                          f'({PEERS[peer].top1}, latency interpolated between the widths) / '
                          f'{peer}', latency_at(PEERS[peer].top1, widths), points[peer][0])
        ours = dict(part='models', model='RepGhostNet 1.0x', structure='deployed', threads=1,
                    batch=batch)
        ratio(f'deployed RepGhostNet 1.0x, batch {batch}: torch.compile / PyTorch eager',
              median_ms(rows, backend='torch.compile', **ours),
              median_ms(rows, backend='pytorch', **ours))
        for runtime in ('onnxruntime', 'openvino'):
            ratio(f'deployed RepGhostNet 1.0x, batch {batch}: {runtime} int8 / fp32',
                  median_ms(rows, backend=f'{runtime} int8', **ours),
                  median_ms(rows, backend=runtime, **ours))
        eager = dict(part='layouts', threads=1, batch=batch)
        times = {s: median_ms(rows, structure=s, **eager) for s in (
            'train, NCHW', 'deployed, NCHW', 'train, channels_last', 'deployed, channels_last')}
        ratio(f'PyTorch eager, 1 thread, batch {batch}: deployed / train structure (NCHW)',
              times['deployed, NCHW'], times['train, NCHW'])
        if None not in times.values():
            ratio(f'PyTorch eager, 1 thread, batch {batch}: deployed / train structure, each '
                  'in its faster layout', min(times['deployed, NCHW'],
                                              times['deployed, channels_last']),
                  min(times['train, NCHW'], times['train, channels_last']))
    for variant in TRAINING_VARIANTS:
        ratio(f'training step ({variant}), with / without the BN re-parameterization branch',
              median_ms(rows, part='training', structure=f'with BN branch (paper), {variant}'),
              median_ms(rows, part='training', structure=f'no re-param branch, {variant}'))
    for variant in TRAINING_VARIANTS[1:]:
        ratio(f'training step with the BN branch: {variant} / {TRAINING_VARIANTS[0]}',
              median_ms(rows, part='training', structure=f'with BN branch (paper), {variant}'),
              median_ms(rows, part='training',
                        structure=f'with BN branch (paper), {TRAINING_VARIANTS[0]}'))
    for threads in sorted({r['threads'] for r in rows if r['part'] == 'models'}):
        for batch in (1, 8):
            case = dict(part='models', model='RepGhostNet 1.0x', structure='deployed',
                        threads=threads, batch=batch)
            label = f'{threads} thread{"s" if threads > 1 else ""}, batch {batch}'
            ratio(f'OpenVINO / onnxruntime, {label}: deployed RepGhostNet 1.0x',
                  median_ms(rows, backend='openvino', **case),
                  median_ms(rows, backend='onnxruntime', **case))
            ratio(f'OpenVINO, {label}: deployed RepGhostNet 1.0x, dynamic / static input shape',
                  median_ms(rows, backend='openvino (dynamic shape)', **case),
                  median_ms(rows, backend='openvino', **case))
    e2e = {(r['structure'], r['backend']): r['median_ms'] for r in rows
           if r['part'] == 'end2end'}
    numpy_post = e2e.get(('raw graph + numpy post-processing', 'onnxruntime'))
    ratio('end2end, onnxruntime: end-to-end graph / raw graph + numpy post-processing',
          e2e.get(('end-to-end graph', 'onnxruntime')), numpy_post)
    ratio('end2end: OpenVINO end-to-end graph / onnxruntime raw graph + numpy post-processing',
          e2e.get(('end-to-end graph', 'openvino')), numpy_post)
    ratio('end2end, OpenVINO: end-to-end graph / raw graph + numpy post-processing',
          e2e.get(('end-to-end graph', 'openvino')),
          e2e.get(('raw graph + numpy post-processing', 'openvino')))
    ratio('end2end, onnxruntime: raw graph + numpy post-processing / raw graph only',
          numpy_post, e2e.get(('raw graph only', 'onnxruntime')))
    return lines + efficiency_lines(rows)


def efficiency_lines(rows):
    """Achieved GFLOP/s of deployed RepGhostNet 1.0x (ORT, OpenVINO; 1 thread) vs the peak."""
    from mmrepghost.utils import count_params_macs
    timed = [r for r in rows if (r['part'], r['model'], r['structure'], r['threads']) == (
        'models', 'RepGhostNet 1.0x', 'deployed', 1) and r['backend'] in ('onnxruntime',
                                                                          'openvino')]
    if not timed:
        return []
    macs = count_params_macs(build_classifier('1.0x'), torch.randn(1, 3, 224, 224))[1]
    peak, how = single_core_peak_gflops()
    lines = []
    for r in timed:
        achieved = 2 * macs * r['batch'] / (r['median_ms'] / 1e3) / 1e9
        probe = [p['gflops'] for p in rows if p['part'] == 'peak' and p['batch'] == r['batch']]
        measured = (f', {100 * achieved / probe[0]:.0f}% of the measured peak '
                    f'{probe[0]:.0f} GFLOP/s ({PEAK_PROBE}, same round-robin)') if probe else ''
        nominal = f', {100 * achieved / peak:.0f}% of the nominal peak {peak:.0f} GFLOP/s ' \
                  f'({how})' if peak else f' (nominal peak unknown: {how})'
        lines.append(f'Deployed RepGhostNet 1.0x, {r["backend"]}, 1 thread, batch '
                     f'{r["batch"]}: {achieved:.1f} GFLOP/s{measured}{nominal}.')
    return lines


def markdown(rows):
    lines = ['| part | model | structure | backend | threads | batch | input | median ms '
             '| min ms | max ms |', '|---|---|---|---|---:|---:|---|---:|---:|---:|']
    for r in rows:
        lines.append(f"| {r['part']} | {r['model']} | {r['structure']} | {r['backend']} | "
                     f"{r['threads']} | {r['batch']} | {r['input']} | {r['median_ms']:.3f} | "
                     f"{r['min_ms']:.3f} | {r['max_ms']:.3f} |")
    return '\n'.join(lines) + '\n'


def models_table(rows, batch):
    """The ``models`` part at ``batch`` as one table: a row per network, a column per runtime
    (median ms), with the network's top-1."""
    cells, networks = {}, {}
    for r in rows:
        if r['part'] == 'models' and r['batch'] == batch:
            cells[(r['model'], r['structure'], r['backend'])] = r['median_ms']
            networks[(r['model'], r['structure'])] = None
    if not networks:
        return []
    backends = [b for b in RUNTIMES + ('openvino (dynamic shape)', )
                if any(key[2] == b for key in cells)]
    lines = [f'Batch {batch}, 224x224, 1 thread: median ms (timed interleaved, one table)', '',
             '| network | structure | top-1 | ' + ' | '.join(backends) + ' |',
             '|---|---|---:|' + '---:|' * len(backends)]
    for name, structure in networks:
        values = [cells.get((name, structure, b)) for b in backends]
        lines.append(f'| {name} | {structure} | {TOP1.get(name, "")} | ' + ' | '.join(
            '-' if v is None else f'{v:.2f}' for v in values) + ' |')
    compiled = [r for r in rows if r['part'] == 'models' and r['batch'] == batch
                and 'compile_s' in r]
    if compiled:
        lines += ['', 'torch.compile, time of the first call (compiles), s: ' + ', '.join(
            f"{r['model']} {r['compile_s']:.0f}" for r in compiled)]
    return lines + ['']


def front_points(rows, backend, batch):
    """{network: (median ms, top-1)} of the deployed networks of the ``models`` part in one
    runtime and batch; the RepGhostNet re-implementation of timm is not a peer."""
    return {r['model']: (r['median_ms'], TOP1[r['model']]) for r in rows
            if (r['part'], r['backend'], r['batch']) == ('models', backend, batch)
            and r['structure'] != 'train' and r['model'] in TOP1
            and not (r['model'] in PEERS and PEERS[r['model']].reference)}


def front_lines(rows):
    """Per runtime and batch: the Pareto front (latency vs published top-1) and how far each
    RepGhostNet width not on it is from it."""
    lines = ['| runtime | batch | Pareto front (fastest first) | RepGhostNet on the front | '
             'RepGhostNet off the front: its latency / the fastest front network at least as '
             'accurate; its top-1 below the most accurate front network at most as slow |',
             '|---|---:|---|---|---|']
    for backend in RUNTIMES:
        for batch in (1, 8):
            points = front_points(rows, backend, batch)
            if len(points) < 2:
                continue
            front = pareto_front(points)
            ours = [n for n in points if n in REPGHOST_TOP1]
            off = []
            for name in ours:
                gap = front_gap(name, points)
                if gap is None:
                    continue
                off.append(f"{name.split(' ')[1]}: {gap.slower:.2f}x {gap.faster_peer}, "
                           f'-{gap.less_top1:.1f} vs {gap.better_peer}')
            lines.append(f"| {backend} | {batch} | {', '.join(front)} | "
                         f"{', '.join(n.split(' ')[1] for n in ours if n in front) or 'none'} | "
                         f"{'; '.join(off) or '-'} |")
    return lines if len(lines) > 2 else []


def draw_front(ax, points, title):
    """RepGhostNet's widths as a line, the peers as labelled points, the front as a step."""
    ours = sorted(((v, n) for n, v in points.items() if n in REPGHOST_TOP1),
                  key=lambda item: item[0][1])  # by width (top-1), whatever the latency
    ax.plot([v[0] for v, _ in ours], [v[1] for v, _ in ours], 'o-', color='tab:red',
            label='RepGhostNet (ours, deployed)', zorder=3)
    for (ms, top1), name in ours:
        ax.annotate(name.split(' ')[1], (ms, top1), fontsize=6, textcoords='offset points',
                    xytext=(3, -8), color='tab:red')
    for name, (ms, top1) in points.items():
        if name not in REPGHOST_TOP1:
            ax.plot(ms, top1, 's', color='tab:blue', ms=4, zorder=3)
            ax.annotate(name, (ms, top1), fontsize=6, textcoords='offset points',
                        xytext=(3, 3))
    front = pareto_front(points)
    ax.step([points[n][0] for n in front], [points[n][1] for n in front], where='post',
            ls='--', color='gray', label='Pareto front', zorder=2)
    ax.set_title(title, fontsize=9)
    ax.set_xscale('log')
    from matplotlib.ticker import FormatStrFormatter
    ax.xaxis.set_major_formatter(FormatStrFormatter('%g'))
    ax.xaxis.set_minor_formatter(FormatStrFormatter('%g'))
    ax.tick_params(axis='x', which='minor', labelsize=6)
    ax.set_xlabel('median latency, ms (log scale)', fontsize=8)
    ax.set_ylabel('ImageNet top-1, % (published)', fontsize=8)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7, loc='lower right')


def plot_fronts(rows, out_dir, batch=1):
    """``pareto_<runtime>.png`` for each runtime and ``pareto.png`` with all of them."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = {b: front_points(rows, b, batch) for b in RUNTIMES}
    panels = {b: p for b, p in panels.items() if len(p) >= 2}

    def title(backend):
        note = ' (top-1 of the fp32 networks)' if 'int8' in backend else ''
        return f'{backend}, 1 thread, batch {batch}, 224x224{note}'

    def save(fig, name):
        with atomic_write(osp.join(out_dir, name), overwrite=True) as tmp:
            fig.savefig(tmp, format='png', dpi=110, bbox_inches='tight')
        plt.close(fig)
        return name

    written = []
    for backend, points in panels.items():
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        draw_front(ax, points, title(backend))
        written.append(save(fig, f"pareto_{backend.replace('.', '_').replace(' ', '_')}.png"))
    if panels:
        cols = min(3, len(panels))
        rows_ = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows_, cols, figsize=(6 * cols, 4.3 * rows_), squeeze=False)
        for ax, (backend, points) in zip(axes.flat, panels.items()):
            draw_front(ax, points, title(backend))
        for ax in list(axes.flat)[len(panels):]:
            ax.axis('off')
        written.append(save(fig, 'pareto.png'))
    return written


def main(argv=None) -> int:
    args = parse_args(argv)
    thread_counts = [1] if args.quick else sorted({1, os.cpu_count() or 1})
    args.openvino = openvino_core() if {'models', 'detectors', 'end2end'} & set(
        args.parts) else None
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp_dir:
        if 'models' in args.parts:
            run_models(args, rows, tmp_dir, notes)
        if 'layouts' in args.parts:
            run_layouts(args, thread_counts, rows)
        if 'table1' in args.parts:
            run_table1(args, thread_counts, rows)
        if 'detectors' in args.parts:
            run_detectors(args, thread_counts, rows, tmp_dir)
        if 'training' in args.parts:
            run_training(args, thread_counts, rows)
        if 'end2end' in args.parts:
            run_end2end(args, rows, tmp_dir, notes)
    header = environment_lines(PACKAGES)
    sections = ['# CPU latency benchmark', ''] + [f'- {line}' for line in header] + ['']
    for batch in (1, 8):
        sections += models_table(rows, batch)
    fronts = front_lines(rows)
    if fronts:
        sections += ['Pareto fronts (latency measured here vs published ImageNet top-1):', '']
        sections += fronts + ['']
    summary = summary_lines(rows) + notes
    if summary:
        sections += [f'- {line}' for line in summary] + ['']
    sections += ['All cases (median, min, max of the timed runs):', '', markdown(rows)]
    if 'models' in args.parts:
        sections += ['Published top-1 of the peers:', ''] + [
            f'- {name} (timm `{peer.timm_name}`): {peer.top1}: {peer.source}'
            for name, peer in PEERS.items()] + [
            '- RepGhostNet: the paper (Chen et al., arXiv 2211.06088), Table 3', '']
    table = '\n'.join(sections)
    written = write_report(args.out_dir, 'results', table, rows)
    if 'models' in args.parts:
        written += plot_fronts(rows, args.out_dir)
    print(table)
    print(f'wrote into {args.out_dir}: ' + ', '.join(osp.basename(p) for p in written))
    return 0


if __name__ == '__main__':
    sys.exit(main())
