"""tools/quantize.py with the onnxruntime backend: quantize -> evaluate on a tiny classifier,
the per-layer decisions in the graph itself, the decision programme against brute force, the
network region of a graph, and bad input (one error, nothing written).

The validation set is labelled by the fp32 file itself (through ``tools/deploy_test.py``'s
runtime), so fp32 scores 100 % and every prediction int8 changes costs accuracy. The network
is untrained (random weights, BN statistics of the images): accuracy on trained models is
measured by ``make demo`` and tools/benchmark_quantization.py (docs/quantization.md).
"""
import glob
import itertools
import json
import os
import os.path as osp
import re
import shutil
import sys

import numpy as np
import onnx
import pytest
from mmengine.config import Config
from onnx import TensorProto, helper, numpy_helper

from mmrepghost.deploy.quantize import QuantizeError, calibration_paths
from mmrepghost.deploy.quantize.onnx_graph import network_nodes
from mmrepghost.deploy.quantize.onnxruntime_backend import (_plan, quantize_every_layer,
                                                            quantized_nodes)
from tests.conftest import REPO_ROOT, load_tool
from tests.test_deploy.test_deploy_accuracy import (deploy_random_model, metric,
                                                    run_deploy_test)

CONFIG = """_base_ = '{base}'
data_root = '{data}'
dataset = dict(data_root=data_root)
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dataset)
val_dataloader = dict(batch_size=8, num_workers=0, persistent_workers=False, dataset=dataset)
test_dataloader = val_dataloader
"""


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A random deployed RepGhostNet 1.0x classifier exported end to end at 64x64, and a
    tiny ImageNet-layout set whose val labels are that file's own top-1."""
    import torch

    from mmrepghost_runtime import load_model, read_image
    torch.manual_seed(0)  # module fixtures run before the per-test seeding of conftest
    root = tmp_path_factory.mktemp('quantize_ort')
    data = str(root / 'tiny_imagenet')
    load_tool('make_tiny_imagenet').main(['--out', data, '--train', '3', '--val', '5'])
    config = str(root / 'cls.py')
    with open(config, 'w') as f:
        base = osp.join(REPO_ROOT, 'configs/cls/repghost_1_0x_tiny-imagenet.py')
        f.write(CONFIG.format(base=base, data=data))
    cfg = Config.fromfile(config)
    val = sorted(map(str, (root / 'tiny_imagenet' / 'val').glob('*.JPEG')))
    checkpoint, deploy_config = deploy_random_model(cfg, str(root), cfg.classes, val)
    model = str(root / 'cls.onnx')
    assert load_tool('export_onnx').main([deploy_config, checkpoint, '--out', model,
                                          '--end2end', '--probs', '--shape', '64', '64']) == 0
    fp32 = load_model(model)
    labels = [p.label for p in fp32.predict([read_image(p)[0] for p in val], batch_size=8)]
    assert len(set(labels)) >= 2, labels
    with open(osp.join(data, 'meta/val.txt'), 'w') as f:
        f.writelines(f'{osp.basename(p)} {label}\n' for p, label in zip(val, labels))
    return root, config, model


def quantize_tool(*argv) -> int:
    return load_tool('quantize').main([str(a) for a in argv])


def conv_weight_sources(path: str) -> dict:
    """``{conv node name: op type producing its weight}`` (DequantizeLinear = int8)."""
    graph = onnx.load(path).graph
    producer = {o: n for n in graph.node for o in n.output}
    return {n.name: (producer[n.input[1]].op_type if n.input[1] in producer else 'initializer')
            for n in graph.node if n.op_type == 'Conv'}


def test_quantize_then_evaluate(setup, capsys, tmp_path):
    from mmrepghost_runtime import load_model, read_image
    root, config, model = setup
    reference = metric(run_deploy_test(capsys, config, model), 'accuracy/top1')
    assert reference == 100.0  # labelled by itself
    out = str(tmp_path / 'cls_int8.onnx')
    assert quantize_tool(config, model, '--out', out, '--calib-images', 16, '--runs', 3) == 0
    printed = capsys.readouterr().out
    assert 'latency: runtime onnxruntime' in printed and 'ratio' in printed
    report = json.load(open(str(tmp_path / 'cls_int8.quantization.json')))
    assert report['backend'] == 'onnxruntime' and report['calibration']['images'] == 16
    assert report['calibration']['split'] == 'train'
    assert all(layer['precision'] == 'int8' for layer in report['layers'])  # nothing excluded
    assert all(layer['sqnr_db'] > 15 for layer in report['layers']
               if layer['kind'].startswith('conv'))
    assert report['outputs']['cosine'] > 0.8  # random weights: see the module doc
    assert report['latency']['fp32_ms'] > 0 and report['latency']['int8_ms'] > 0
    sources = conv_weight_sources(out)
    assert set(sources.values()) == {'DequantizeLinear'}  # every conv reads int8 weights
    # the int8 file's accuracy, through the runtime, as mim test would score it
    top1 = metric(run_deploy_test(capsys, config, out), 'accuracy/top1')
    # an untrained network amplifies quantization noise layer after layer (output SQNR 6-10 dB
    # here, 33 dB for the trained tiny RetinaNet of `make demo`, whose mAP int8 keeps): so a
    # loose bound, 3x chance (12.5 %), and equal to the agreement counted here independently
    assert top1 >= 37.5, f'int8 top-1 {top1} vs fp32 {reference}'
    meta = osp.join(str(root), 'tiny_imagenet', 'meta', 'val.txt')
    labels = dict(line.split() for line in open(meta))
    val = sorted(glob.glob(osp.join(str(root), 'tiny_imagenet', 'val', '*.JPEG')))
    predictions = load_model(out).predict([read_image(p)[0] for p in val])
    truth = [int(labels[osp.basename(p)]) for p in val]
    # int8 scores take discrete values: exact ties happen, and the evaluator's torch.topk may
    # break them otherwise than numpy, so the count is bounded by strict and tied agreement
    strict = sum(r.label == t for r, t in zip(predictions, truth))
    tied = sum(r.scores[t] == r.scores.max() for r, t in zip(predictions, truth))
    assert 100.0 * strict / len(val) - 1e-6 <= top1 <= 100.0 * tied / len(val) + 1e-6


def test_exclude_and_auto_exclude_hold_in_the_graph(setup, capsys, tmp_path):
    root, config, model = setup
    out = str(tmp_path / 'mixed.onnx')
    pattern = '*/blocks.0/*'
    assert quantize_tool(config, model, '--out', out, '--calib-images', 8, '--runs', 5,
                         '--exclude', pattern, '--auto-exclude') == 0
    report = json.load(open(str(tmp_path / 'mixed.quantization.json')))
    sources = conv_weight_sources(out)
    convs = [layer for layer in report['layers'] if layer['kind'].startswith('conv')]
    assert convs and all(layer['fp32_ms'] > 0 and layer['int8_ms'] > 0 for layer in convs)
    for layer in convs:
        expected = 'DequantizeLinear' if layer['precision'] == 'int8' else 'initializer'
        assert sources[layer['name']] == expected, layer
        if '/blocks.0/' in layer['name']:
            assert layer['precision'] == 'fp32' and layer['reason'] == f'--exclude {pattern!r}'
        elif layer['precision'] == 'fp32':
            assert layer['reason'].startswith('auto: '), layer
    # the plan kept is the fastest whole model among those timed (all fp32 is a reference)
    note = next(n for n in report['notes'] if n.startswith('whole-model ms of the plans'))
    pairs = re.findall(r'([a-z][a-z0-9 -]+?) ([0-9.]+)(?:,|$)', note.split(': ', 1)[1])
    plan_ms = {label: float(ms) for label, ms in pairs}
    assert {'every layer', 'per-layer programme', 'all fp32'} <= set(plan_ms), note
    fastest = min((label for label in plan_ms if label != 'all fp32'), key=plan_ms.get)
    auto = {layer['reason'] for layer in convs if layer['reason'].startswith('auto: fp32 in')}
    assert all(f'fastest plan ({fastest})' in reason for reason in auto), (auto, note)
    # the report's markdown lists each layer with its decision
    text = open(str(tmp_path / 'mixed.quantization.md')).read()
    assert all(f"`{layer['name']}`" in text for layer in report['layers'])


def plan_cost(layers, probes, assignment):
    """The objective the programme minimizes, written out: kernels + half a boundary per
    precision change (the graph's input and outputs are fp32)."""
    total, previous = 0.0, False
    for name, int8 in zip(layers, assignment):
        p = probes[name]
        total += p['int8_ms'] if int8 else p['fp32_ms']
        if int8 != previous:
            total += p['boundary_ms'] / 2
        previous = int8
    if previous:
        total += probes[layers[-1]]['boundary_ms'] / 2
    return total


@pytest.mark.parametrize('seed', range(6))
def test_plan_is_the_cheapest_assignment(seed):
    rng = np.random.default_rng(seed)
    layers = [f'l{i}' for i in range(9)]
    probes = {name: dict(fp32_ms=float(rng.uniform(0.01, 0.1)),
                         int8_ms=float(rng.uniform(0.005, 0.3)),
                         boundary_ms=float(rng.uniform(0.0, 0.08))) for name in layers}
    forced = {layers[int(rng.integers(9))]}
    plan = _plan(layers, probes, forced)
    assert not any(plan[name] for name in forced)
    best = min((a for a in itertools.product((False, True), repeat=len(layers))
                if not any(a[layers.index(n)] for n in forced)),
               key=lambda a: plan_cost(layers, probes, a))
    assert plan_cost(layers, probes, [plan[n] for n in layers]) == \
        pytest.approx(plan_cost(layers, probes, best))


def test_plan_keeps_a_lone_fast_layer_fp32_when_boundaries_cost_more():
    layers = ['a', 'b', 'c']
    probes = {'a': dict(fp32_ms=1.0, int8_ms=3.0, boundary_ms=0.5),
              'b': dict(fp32_ms=1.0, int8_ms=0.7, boundary_ms=0.5),  # saves 0.3, costs 0.5
              'c': dict(fp32_ms=1.0, int8_ms=3.0, boundary_ms=0.5)}
    assert _plan(layers, probes, ()) == {'a': False, 'b': False, 'c': False}
    probes['b']['int8_ms'] = 0.4  # saves 0.6 > 0.5
    assert _plan(layers, probes, ()) == {'a': False, 'b': True, 'c': False}


def small_graph():
    """IsNaN/Where reader -> conv -> relu -> conv (+ residual) -> conv, and through
    TopK/Gather (post-processing) -> conv and a decoding Mul."""
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), 'w')
    k = numpy_helper.from_array(np.array([2], np.int64), 'k')
    nodes = [
        helper.make_node('IsNaN', ['x'], ['nan'], name='isnan'),
        helper.make_node('Where', ['nan', 'x', 'x'], ['filled'], name='where'),
        helper.make_node('Conv', ['filled', 'w'], ['c1'], name='conv1'),
        helper.make_node('Relu', ['c1'], ['r1'], name='relu1'),
        helper.make_node('Conv', ['r1', 'w'], ['c2'], name='conv2'),
        helper.make_node('Add', ['c2', 'r1'], ['a2'], name='add2'),
        helper.make_node('TopK', ['a2', 'k'], ['top', 'idx'], name='topk', axis=1),
        helper.make_node('Gather', ['a2', 'idx'], ['g'], name='gather', axis=1),
        helper.make_node('Mul', ['g', 'g'], ['decoded'], name='decode_mul'),
        helper.make_node('Conv', ['g', 'w'], ['c3'], name='conv3'),
        helper.make_node('Conv', ['a2', 'w'], ['c4'], name='conv4'),
    ]
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4, 8, 8])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
            for n in ('c3', 'c4', 'decoded')]
    return helper.make_graph(nodes, 'g', [x], outs, [w, k])


def test_network_region_stops_at_post_processing():
    graph = small_graph()
    assert network_nodes(graph) == ['conv1', 'relu1', 'conv2', 'add2', 'conv3', 'conv4']
    # an fp32 conv2 leaves the add it feeds fp32 (no quantize/dequantize around it)
    assert quantized_nodes(graph, network_nodes(graph), {'conv2'}) == \
        ['conv1', 'relu1', 'conv3', 'conv4']


def test_quantize_every_layer_quantizes_every_conv_and_keeps_the_function(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2, w3 = (numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
                  for name, shape in (('w1', (8, 3, 3, 3)), ('w2', (8, 1, 3, 3)),
                                      ('w3', (4, 8, 1, 1))))
    nodes = [helper.make_node('Conv', ['x', 'w1'], ['c1'], name='conv1', pads=[1] * 4),
             helper.make_node('Relu', ['c1'], ['r1'], name='relu1'),
             helper.make_node('Conv', ['r1', 'w2'], ['c2'], name='dw', group=8, pads=[1] * 4),
             helper.make_node('Add', ['c2', 'r1'], ['a2'], name='add'),
             helper.make_node('Conv', ['a2', 'w3'], ['y'], name='pw')]
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)], [w1, w2, w3])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    calib = [rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    path = str(tmp_path / 'int8.onnx')
    onnx.save(quantize_every_layer(model, 'x', calib), path)
    assert conv_weight_sources(path) == dict.fromkeys(('conv1', 'dw', 'pw'), 'DequantizeLinear')
    import onnxruntime as ort
    fp32 = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    int8 = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    feed = {'x': calib[0]}
    a, b = fp32.run(None, feed)[0], int8.run(None, feed)[0]
    assert not np.array_equal(a, b)  # it runs in int8
    np.testing.assert_allclose(b, a, atol=0.05 * np.abs(a).max())


BAD = {  # case: (backend, model, out, options, error type, message)
    'calib_more_than_split': ('onnxruntime', 'onnx', 'int8.onnx', dict(calib=1000),
                              QuantizeError, 'has 24 images, fewer than the 1000 calibration '
                              'images asked for; pass --calib-images 24 or fewer'),
    'exclude_matches_nothing': ('onnxruntime', 'onnx', 'int8.onnx',
                                dict(exclude=['*/no_such_layer/*']), QuantizeError,
                                "--exclude '*/no_such_layer/*' matches none of the"),
    'out_is_model': ('onnxruntime', 'onnx', 'cls.onnx', {}, QuantizeError,
                     'is MODEL; the input is never overwritten'),
    'not_deployed': ('onnxruntime', 'bn', 'int8.onnx', {}, QuantizeError,
                     'is not a deployed model: it has 1 BatchNormalization node'),
    'onnxruntime_missing': ('onnxruntime', 'onnx', 'int8.onnx', dict(missing='onnxruntime'),
                            ImportError, 'install it with `pip install onnxruntime`'),
    'nncf_missing': ('openvino', 'onnx', 'int8.onnx', dict(missing='nncf'), ImportError,
                     'install it with `pip install nncf`'),
    'torchao_missing': ('torchao', 'pth', 'int8.pt2', dict(missing='torchao'), ImportError,
                        'install it with `pip install torchao`'),
}


def add_batchnorm(path: str) -> None:
    """Leave a BatchNormalization after the first conv, as a training structure would."""
    m = onnx.load(path)
    first = next(n for n in m.graph.node if n.op_type == 'Conv')
    weights = {t.name: t for t in m.graph.initializer}
    channels = weights[first.input[1]].dims[0]
    params = [numpy_helper.from_array(np.ones(channels, np.float32), f'bn_{p}')
              for p in ('s', 'b', 'm', 'v')]
    m.graph.initializer.extend(params)
    c = first.output[0]
    for n in m.graph.node:
        n.input[:] = [f'{c}_bn' if i == c else i for i in n.input]
    m.graph.node.insert(list(m.graph.node).index(first) + 1, helper.make_node(
        'BatchNormalization', [c] + [p.name for p in params], [f'{c}_bn'], name='bn'))
    onnx.save(m, path)


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_one_error_nothing_written(setup, case, tmp_path, monkeypatch, capsys):
    from mmrepghost.deploy.quantize import quantize
    root, config, model = setup
    backend, kind, out, options, error, message = BAD[case]
    work = tmp_path / 'work'
    work.mkdir()
    local = str(work / 'cls.onnx')
    shutil.copy(model, local)
    shutil.copy(osp.splitext(model)[0] + '.json', osp.splitext(local)[0] + '.json')
    if kind == 'bn':
        add_batchnorm(local)
    elif kind == 'pth':
        local = str(work / 'model_deploy.pth')
        open(local, 'wb').close()
    if 'missing' in options:
        monkeypatch.setitem(sys.modules, options['missing'], None)
    out = str(work / out)
    calib, exclude = options.get('calib', 8), options.get('exclude', [])
    before = sorted(os.listdir(work))
    with pytest.raises(error) as info:
        quantize(backend, config, local, out, calib, exclude, runs=2, log=lambda *_: None)
    assert message in str(info.value), str(info.value)
    assert sorted(os.listdir(work)) == before
    # the tool prints it as one line and exits 2
    argv = [config, local, '--out', out, '--backend', backend, '--calib-images', calib,
            '--runs', 2] + (['--exclude', *exclude] if exclude else [])
    assert quantize_tool(*argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and message in errors[0], err
    assert sorted(os.listdir(work)) == before


def test_calibration_comes_from_the_train_split(setup):
    root, config, model = setup
    cfg = Config.fromfile(config)
    paths = calibration_paths(cfg, 10)
    assert len(paths) == len(set(paths)) == 10
    assert all(f'{os.sep}train{os.sep}' in p for p in paths), paths[:2]
    assert paths == calibration_paths(cfg, 10)  # seeded


@pytest.mark.parametrize('backend', ['openvino', 'torchao'])
def test_other_backends_through_the_tool_then_deploy_test(setup, backend, tmp_path, capsys):
    """The dispatcher and the evaluation of each backend's output (their own tests cover the
    backends in depth: tests/test_deploy/test_quantize_openvino.py, ..._torchao.py)."""
    from mmrepghost.deploy.quantize import quantize
    root, config, model = setup
    source = model if backend == 'openvino' else str(root / 'model_deploy.pth')
    out = str(tmp_path / ('int8.onnx' if backend == 'openvino' else 'int8.pt2'))
    report = quantize(backend, config, source, out, calib_images=4, runs=1 if backend ==
                      'openvino' else 0, log=lambda *_: None)
    assert report.backend == backend and report.config == config
    convs = [r for r in report.layers if r.kind.startswith('conv')]
    # NNCF's CPU rules keep the squeeze-excitation convs fp32: with a reason, like any fp32
    assert sum(r.precision == 'int8' for r in convs) >= 0.8 * len(convs)
    assert all(r.reason for r in convs if r.precision == 'fp32')
    written = json.load(open(str(tmp_path / 'int8.quantization.json')))
    assert written['calibration']['images'] == 4 and written['out'] == out
    line = run_deploy_test(capsys, config, out, *(['--backend', 'openvino']
                                                  if backend == 'openvino' else []))
    assert line.startswith(f'deploy_test ({backend}, batch 1) {out}: accuracy/top1: ')
    assert metric(line, 'accuracy/top1') >= 37.5  # 3x chance; see test_quantize_then_evaluate
