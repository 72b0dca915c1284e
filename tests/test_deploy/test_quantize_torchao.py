"""The torchao (PT2E, x86 Inductor) INT8 backend on a tiny deployed RepGhostNet classifier.

The model is RepGhostNet 0.5x cut after stage 1 (4 bottlenecks, SE included) with a linear
head, 64 px crops of the generated tiny ImageNet set; random weights with BN statistics of
those images (activations O(1), as after training), then re-parameterized. Inductor takes
tens of seconds to compile such a network on 2 cores, so compiling is exercised only by the
kernel-attribution test on a 3-layer network; the rest runs eager (``runs=0``, or compiling
replaced by eager calls in the auto-exclude test).
"""
import copy
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmrepghost.deploy import build_model, reparameterize_model, save_deployed
from mmrepghost.deploy.onnx import RawOutputs
from mmrepghost.deploy.preprocess_spec import preprocess_spec
from mmrepghost.deploy.quantize.common import (LayerRecord, QuantizeError, calibration_inputs,
                                               calibration_paths, cosine, sqnr_db)
from mmrepghost.deploy.quantize import torchao_backend as tb
from mmrepghost.utils import save_checkpoint_atomic
from tests.conftest import REPO_ROOT, calibrate_bn_, load_tool

pytest.importorskip('torchao')

CONFIG = """_base_ = '{base}'
model = dict(backbone=dict(arch='0.5x', out_indices=(1, )),
             head=dict(_delete_=True, type='LinearClsHead', num_classes=8, in_channels=20,
                       topk=(1, )))
loader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root='{data}'))
train_dataloader = loader
val_dataloader = dict(batch_size=4, **loader)
test_dataloader = val_dataloader
"""
EXCLUDE = ('backbone.conv_stem', 'backbone.blocks.2.0.ghost1.*')
#: the layer made lossy in int8 for auto_exclude, and the conv feeding it
LOSSY, FEEDER = ('backbone.blocks.2.0.ghost1.cheap_operation.0',
                 'backbone.blocks.2.0.ghost1.primary_conv.0')
SILENT = dict(log=lambda message: None)


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def listing(directory):
    return sorted(os.listdir(directory))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('torchao')
    data = str(root / 'tiny_imagenet')
    load_tool('make_tiny_imagenet').main(['--out', data, '--train', '1', '--val', '1'])
    config = str(root / 'tiny_cls.py')
    with open(config, 'w') as f:
        f.write(CONFIG.format(
            base=osp.join(REPO_ROOT, 'configs/cls/repghost_1_0x_tiny-imagenet.py'), data=data))
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)  # (module fixtures run before the seeding one of conftest)
    model = build_model(cfg)
    paths = calibration_paths(cfg, 8)
    spec = preprocess_spec(cfg)
    images = torch.cat([torch.from_numpy(b) for b in calibration_inputs(paths, spec)])
    calibrate_bn_(RawOutputs(model), inputs=images)
    classes = dict(dataset_meta=dict(classes=load_tool('make_tiny_imagenet').CLASSES))
    train_checkpoint = str(root / 'train.pth')
    save_checkpoint_atomic(dict(meta=classes, state_dict=model.state_dict()), train_checkpoint)
    lossy = copy.deepcopy(model)
    reparameterize_model(model, logger='silent')
    checkpoint, deploy_config = save_deployed(model, cfg, str(root / 'tiny_deploy.pth'),
                                              classes)
    # the lossy twin: one channel of FEEDER's output is ~1000 (a per-tensor uint8 scale of
    # ~4 for LOSSY's input) and LOSSY ignores that channel (depthwise: its output channel is
    # constant), so its other channels are quantized to a few levels
    reparameterize_model(lossy, logger='silent')
    with torch.no_grad():
        lossy.get_submodule(FEEDER).bias[0] = 1000.0
        lossy.get_submodule(LOSSY).weight[0] = 0.0
    lossy_checkpoint, _ = save_deployed(lossy, cfg, str(root / 'lossy_deploy.pth'), classes)
    out = str(root / 'out' / 'tiny_int8.pt2')
    report = tb.quantize_torchao(deploy_config, checkpoint, out, paths, exclude=EXCLUDE,
                                 runs=0, **SILENT)
    return dict(root=root, data=data, config=config, deploy_config=deploy_config,
                checkpoint=checkpoint, train_checkpoint=train_checkpoint,
                lossy_checkpoint=lossy_checkpoint, model=model, paths=paths, spec=spec,
                out=out, report=report)


def test_int8_program_loads_in_a_fresh_process_and_agrees_with_fp32(tiny, tmp_path):
    batches = [torch.from_numpy(b) for b in calibration_inputs(tiny['paths'], tiny['spec'])]
    with torch.no_grad():
        reference = torch.cat([RawOutputs(tiny['model'])(b)[0] for b in batches]).numpy()
    np.save(tmp_path / 'inputs.npy', torch.cat(batches).numpy())
    # torch alone (torchao, mmrepghost and OpenMMLab blocked) runs the file eager, as
    # load_torchao does: it is self-contained
    script = f"""
import json, sys
for name in ('torchao', 'mmrepghost', 'mmdet', 'mmpretrain', 'mmengine', 'mmcv'):
    sys.modules[name] = None
import numpy as np, torch
import torch.ao.quantization.fx._decomposed
extra = {{'mmrepghost_torchao.json': ''}}
with open({tiny['out']!r}, 'rb') as f:
    module = torch.export.load(f, extra_files=extra).module()
inputs = torch.from_numpy(np.load({str(tmp_path / 'inputs.npy')!r}))
with torch.no_grad():
    logits = torch.cat([module(x[None])[0] for x in inputs])
np.save({str(tmp_path / 'int8.npy')!r}, logits.numpy())
print(extra['mmrepghost_torchao.json'])
"""
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads(result.stdout.strip().splitlines()[-1])
    assert meta['format'] == tb.FORMAT and meta['input_shape'] == [1, 3, 64, 64]
    assert meta['output_names'] == ['output_0'] and not meta['is_detector']
    int8 = np.load(tmp_path / 'int8.npy')
    assert int8.shape == reference.shape == (8, 8)
    # Each layer alone keeps 25-55 dB SQNR in int8 here (auto_exclude's measurement); through
    # the 26 conv/linear layers of this *random* network the 8 logits of 8 images kept
    # 15.4-21.2 dB (cosine 0.986-0.997) over six weight draws, 18.2 dB / 0.9925 for the
    # seeded one (a trained network keeps more). Bounds: cosine > 0.99, SQNR > 15 dB (the
    # noise power under 3% of the signal's).
    assert cosine(reference, int8) > 0.99
    assert sqnr_db(reference, int8) > 15.0
    assert not np.array_equal(reference, int8)  # it is not the fp32 network
    outputs = tiny['report'].outputs
    assert outputs['images'] == 4 and outputs['cosine'] > 0.99 and outputs['sqnr_db'] > 15.0


def _weight_is_dequantized(node) -> bool:
    return tb._is_quant_op(node.args[1], ('dequantize_per_channel', ))


def test_excluded_layers_are_fp32_in_the_report_and_in_the_graph(tiny):
    report = tiny['report']
    records = {r.name: r for r in report.layers}
    excluded = {name for name in records if name == 'backbone.conv_stem'
                or name.startswith('backbone.blocks.2.0.ghost1.')}
    assert len(excluded) == 3  # stem, ghost1.primary_conv.0, ghost1.cheap_operation.0
    assert report.excluded == {name: records[name].reason for name in excluded}
    assert records['backbone.conv_stem'].reason == "--exclude 'backbone.conv_stem'"
    assert all(r.precision == 'int8' for name, r in records.items() if name not in excluded)
    assert records['head.fc'].kind == 'linear 20->8'
    assert records['backbone.blocks.1.0.conv_dw'].kind == 'conv 3x3 s2 dw 12->12 @16x16'
    assert records['backbone.blocks.3.0.se.conv_reduce'].kind.startswith('conv 1x1 20->')
    # the saved program: excluded convs compute on fp32 weights, the others on int8 ones
    module = tb.load_torchao(tiny['out'])
    assert module.mmrepghost_meta['layers'] == {r.name: r.precision for r in report.layers}
    nodes = tb._weighted_nodes(module)
    seen = set()
    for path, found in nodes.items():
        name = path[len('model.'):]
        seen.add(name)
        for node in found:
            assert _weight_is_dequantized(node) == (name not in excluded), name
            if name in excluded:  # and its input is not a dequantized (int8) tensor either
                assert not tb._is_quant_op(node.args[0]), name
    assert seen == set(records)


def test_errors_name_the_problem_and_write_nothing(tiny, monkeypatch):
    out_dir = str(tiny['root'] / 'errors')
    os.makedirs(out_dir)
    out = osp.join(out_dir, 'model_int8.pt2')
    args = (tiny['deploy_config'], tiny['checkpoint'], out, tiny['paths'][:2])
    with pytest.raises(QuantizeError, match=r'training branches.*tools/reparameterize\.py'):
        tb.quantize_torchao(tiny['config'], tiny['train_checkpoint'], out, tiny['paths'][:2],
                            runs=0, **SILENT)
    with pytest.raises(QuantizeError, match=r"--exclude 'backbone\.nothing\.\*' matches none"):
        tb.quantize_torchao(*args, exclude=['backbone.conv_stem', 'backbone.nothing.*'],
                            runs=0, **SILENT)
    with pytest.raises(QuantizeError, match='a .pt2 file'):
        tb.quantize_torchao(*args[:2], osp.join(out_dir, 'model.onnx'), args[3], **SILENT)
    assert listing(out_dir) == []
    # OUT is the input: refused even with overwrite, the input untouched
    before = sha(tiny['checkpoint']), sha(tiny['deploy_config'])
    with pytest.raises(QuantizeError, match='is the input CHECKPOINT'):
        tb.quantize_torchao(args[0], args[1], args[1], args[3], overwrite=True, **SILENT)
    with pytest.raises(QuantizeError, match='is the input CONFIG'):
        tb.quantize_torchao(args[0], args[1], args[0], args[3], overwrite=True, **SILENT)
    assert (sha(tiny['checkpoint']), sha(tiny['deploy_config'])) == before
    # an existing OUT needs overwrite
    existing = osp.join(out_dir, 'model.pt2')
    with open(existing, 'wb') as f:
        f.write(b'older')
    with pytest.raises(FileExistsError, match='exists'):
        tb.quantize_torchao(args[0], args[1], existing, args[3], **SILENT)
    assert open(existing, 'rb').read() == b'older'
    assert listing(out_dir) == ['model.pt2']
    assert not [name for name in listing(osp.dirname(tiny['checkpoint'])) if '.tmp' in name]
    # torchao missing: an ImportError naming the pip package, for quantizing and compiling
    monkeypatch.setitem(sys.modules, 'torchao', None)
    for call in (lambda: tb.quantize_torchao(*args, runs=0, **SILENT),
                 lambda: tb.compile_torchao(nn.Identity())):
        with pytest.raises(ImportError, match=r'pip install torchao'):
            call()
    assert listing(out_dir) == ['model.pt2']
    assert tb.load_torchao(tiny['out']).mmrepghost_meta['format'] == tb.FORMAT  # eager: torch


def test_evaluate_gives_the_config_metric_of_the_int8_program(tiny):
    """The val labels are rewritten to the int8 program's own predictions (computed here with
    the runtime's preprocessing): evaluate_torchao, through mmpretrain's test pipeline, data
    preprocessor, head and Accuracy metric, must score them 100%."""
    cfg = Config.fromfile(tiny['config'])
    module = tb.load_torchao(tiny['out'])
    val_txt = osp.join(tiny['data'], 'meta', 'val.txt')
    files = [line.split()[0] for line in open(val_txt).read().splitlines()]
    paths = [osp.join(tiny['data'], 'val', name) for name in files]
    with torch.no_grad():
        labels = [int(module(torch.from_numpy(b))[0].argmax())
                  for b in calibration_inputs(paths, preprocess_spec(cfg))]
    with open(val_txt, 'w') as f:
        f.write(''.join(f'{name} {label}\n' for name, label in zip(files, labels)))
    assert len(set(labels)) > 1  # not one class predicted for all
    assert tb.evaluate_torchao(tiny['config'], tiny['out']) == {'accuracy/top1': 100.0}


def test_auto_exclude_keeps_the_lossy_layer_fp32(tiny, monkeypatch, tmp_path):
    """Measured, not listed: the layer made lossy is found by its SQNR and kept fp32; the
    program is quantized again without it. (Compiling is replaced by eager calls here, so no
    kernel can be attributed: the report says the times are missing.)"""
    def eager(module):
        def run(*args):
            with torch.no_grad():
                return module(*args)
        return run

    monkeypatch.setattr(tb, 'compile_torchao', eager)
    out = str(tmp_path / 'auto.pt2')
    report = tb.quantize_torchao(tiny['deploy_config'], tiny['lossy_checkpoint'], out,
                                 tiny['paths'][:4], exclude=['backbone.conv_stem'],
                                 auto_exclude=True, runs=2, **SILENT)
    records = {r.name: r for r in report.layers}
    lossy = records[LOSSY]
    assert lossy.precision == 'fp32' and lossy.sqnr_db < tb.MIN_LAYER_SQNR_DB
    assert lossy.reason.startswith('auto: too lossy in int8 (layer SQNR')
    assert records['backbone.conv_stem'].reason == "--exclude 'backbone.conv_stem'"
    assert records['backbone.conv_stem'].sqnr_db is None
    kept = [r for r in report.layers if r.precision == 'int8']
    assert kept and all(r.reason == 'auto: kept int8' and r.sqnr_db >= tb.MIN_LAYER_SQNR_DB
                        for r in kept)
    assert all(r.fp32_ms is None and r.int8_ms is None for r in report.layers)
    assert any('could not be matched' in note for note in report.notes)
    assert set(report.latency) >= {'fp32_ms', 'int8_ms', 'ratio'}
    nodes = tb._weighted_nodes(tb.load_torchao(out))
    assert not any(_weight_is_dequantized(n) for n in nodes['model.' + LOSSY])


def test_auto_exclude_decisions():
    def record(name, fp32_ms=None, int8_ms=None, sqnr=None, precision='int8'):
        return LayerRecord(name, 'conv', precision, '', fp32_ms, int8_ms, sqnr)

    decided = tb.decide_auto_exclude([
        record('fast', 0.10, 0.05, 35.0), record('slower', 0.10, 0.12, 35.0),
        record('noise', 0.001, 0.002, 35.0),  # 2x but 1 us: timer noise
        record('lossy', 0.10, 0.05, 12.5), record('unmeasured'),
        record('user', 0.1, None, None, precision='fp32')])
    assert set(decided) == {'slower', 'lossy'}
    assert decided['slower'] == 'auto: int8 kernel slower (0.120 ms vs 0.100 ms fp32)'
    assert decided['lossy'] == 'auto: too lossy in int8 (layer SQNR 12.5 dB < 20 dB)'


def test_kernel_times_are_attributed_to_layers_of_a_compiled_graph():
    """The profiler attribution on a real Inductor compile (two parallel convs on the same
    input that Inductor may reorder, told apart by their weight shapes): each conv gets its
    own kernel's time. (Inductor generates code for so small a linear: no kernel, no time.)"""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(12, 5)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x)], 1).relu()
            return (self.fc(y.mean((2, 3))), )

    net = Net().eval()
    x = torch.randn(1, 3, 16, 16)
    program = torch.export.export(net, (x, ))
    layers = [tb._Layer(name, nodes=[node.name], shapes=[tb._shape(node.args[0])])
              for node in program.graph_module.graph.nodes if tb._is_weighted(node)
              for name in [tb._module_path(node)]]
    assert [layer.name for layer in layers] == ['a', 'b', 'fc']
    times = tb._layer_times(tb.compile_torchao(program.module()), program.graph_module,
                            layers, x, 3)
    assert {'a', 'b'} <= set(times) <= {'a', 'b', 'fc'}
    assert all(t > 0 for t in times.values())
