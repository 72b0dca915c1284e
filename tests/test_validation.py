"""Input validation sweep: every public constructor and tool argument of mmrepghost refuses a
bad value with an error that names the value and what is allowed. One row per case."""
import re

import pytest
import torch

from mmrepghost.deploy.onnx import export_onnx
from mmrepghost.engine import CPUAmpOptimWrapper, RepGhostDeployHook
from mmrepghost.models import (ConvNormAct, RepGhostBottleneck, RepGhostModule, RepGhostNet,
                               SqueezeExcite, repghostnet_classifier_cfg)
from mmrepghost.utils.timing import measure_interleaved, measure_latency
from tests.conftest import load_tool

MODULE = dict(in_channels=4, out_channels=8)
BOTTLENECK = dict(in_channels=8, mid_channels=16, out_channels=8)
NORM_TYPES = r"\('BN', 'BN2d', 'SyncBN'\)"

# (callable, kwargs, error type, message regex)
CONSTRUCTOR_CASES = {
    # RepGhostNet: widths, stages, norms, activations, flags
    'net arch': (RepGhostNet, dict(arch='3.0x'), ValueError,
                 r"arch='3.0x' is unknown; allowed: \['0.5x', '0.58x', '0.8x', '1.0x'"),
    'net arch number': (RepGhostNet, dict(arch=1.0), ValueError, r'arch=1.0 is unknown'),
    'net widen_factor': (RepGhostNet, dict(widen_factor=0.75), ValueError,
                         r'widen_factor=0.75 is not a width of the paper; allowed: \[0.5, '),
    'net out_indices range': (RepGhostNet, dict(out_indices=(0, 5)), ValueError,
                              r'out_indices entry must be an int in \[-5, 4\], got 5'),
    'net out_indices empty': (RepGhostNet, dict(out_indices=()), ValueError,
                              r'non-empty sequence of ints in \[-5, 4\], got \(\)'),
    'net out_indices twice': (RepGhostNet, dict(out_indices=(1, -4)), ValueError,
                              r'out_indices=\(1, -4\) names a stage twice'),
    'net out_indices str': (RepGhostNet, dict(out_indices='0'), ValueError,
                            r"out_indices entry must be an int in \[-5, 4\], got '0'"),
    'net frozen_stages high': (RepGhostNet, dict(frozen_stages=6), ValueError,
                               r'frozen_stages must be an int in \[-1, 5\], got 6'),
    'net frozen_stages low': (RepGhostNet, dict(frozen_stages=-2), ValueError,
                              r'frozen_stages must be an int in \[-1, 5\], got -2'),
    'net norm type': (RepGhostNet, dict(norm_cfg=dict(type='GN', num_groups=4)), ValueError,
                      r"norm_cfg=\{'type': 'GN', 'num_groups': 4\} is not supported: its "
                      rf'type must be one of {NORM_TYPES}'),
    'net norm not dict': (RepGhostNet, dict(norm_cfg='BN'), ValueError,
                          r"norm_cfg='BN' is not supported"),
    'net act type': (RepGhostNet, dict(act_cfg=dict(type='NoSuchAct')), ValueError,
                     r"act_cfg=\{'type': 'NoSuchAct'\} is not supported: its type must be one "
                     r"of \('ReLU'"),
    'net in_channels': (RepGhostNet, dict(in_channels=0), ValueError,
                        'in_channels must be a positive int, got 0'),
    'net branches': (RepGhostNet, dict(reparam_branches=('bn', 'conv3x3')), ValueError,
                     r"reparam_branches=\('bn', 'conv3x3'\) is invalid: use distinct names "
                     r"from \('bn', 'identity', 'dwconv1x1'\)"),
    'net norm_eval flag': (RepGhostNet, dict(norm_eval='yes'), TypeError,
                           "norm_eval must be True or False, got 'yes'"),
    'net deploy flag': (RepGhostNet, dict(deploy=1), TypeError,
                        'deploy must be True or False, got 1'),
    'net with_cp flag': (RepGhostNet, dict(with_cp=None), TypeError,
                         'with_cp must be True or False, got None'),
    'net shortcut flag': (RepGhostNet, dict(shortcut='False'), TypeError,
                          "shortcut must be True or False, got 'False'"),
    # RepGhostModule: kernels, channels, branches
    'module dw_size even': (RepGhostModule, dict(MODULE, dw_size=4), ValueError,
                            r'dw_size must be a positive odd int \(1, 3, 5, ...\), got 4'),
    'module kernel_size': (RepGhostModule, dict(MODULE, kernel_size=0), ValueError,
                           'kernel_size must be a positive odd int .*got 0'),
    'module out_channels': (RepGhostModule, dict(MODULE, out_channels=0), ValueError,
                            'out_channels must be a positive int, got 0'),
    'module in_channels float': (RepGhostModule, dict(MODULE, in_channels=4.0), ValueError,
                                 'in_channels must be a positive int, got 4.0'),
    'module stride': (RepGhostModule, dict(MODULE, stride=0), ValueError,
                      'stride must be a positive int, got 0'),
    'module branches repeated': (RepGhostModule, dict(MODULE, reparam_branches=('bn', 'bn')),
                                 ValueError, 'use distinct names'),
    'module branches str': (RepGhostModule, dict(MODULE, reparam_branches='bn'), ValueError,
                            r"reparam_branches='bn' must be a sequence of names .* e.g. "
                            r"\('bn', \)"),
    'module relu deploy': (RepGhostModule, dict(MODULE, cheap_act=True, deploy=True),
                           ValueError, r'cheap_act=True \(Table 6 "\+ReLU"\) cannot be built '
                           'with deploy=True'),
    'module with_act flag': (RepGhostModule, dict(MODULE, with_act='relu'), TypeError,
                             "with_act must be True or False, got 'relu'"),
    'module norm type': (RepGhostModule, dict(MODULE, norm_cfg=dict(type='LN')), ValueError,
                         rf'its type must be one of {NORM_TYPES}'),
    # RepGhostBottleneck: stride, SE ratio, kernel
    'bottleneck stride': (RepGhostBottleneck, dict(BOTTLENECK, stride=3), ValueError,
                          'stride must be 1 or 2, got 3'),
    'bottleneck se_ratio high': (RepGhostBottleneck, dict(BOTTLENECK, se_ratio=1.5),
                                 ValueError, r'se_ratio \(0 disables SE\) must be a number in '
                                 r'\[0, 1\], got 1.5'),
    'bottleneck se_ratio str': (RepGhostBottleneck, dict(BOTTLENECK, se_ratio='0.25'),
                                ValueError, r"must be a number in \[0, 1\], got '0.25'"),
    'bottleneck dw kernel': (RepGhostBottleneck, dict(BOTTLENECK, dw_kernel_size=2),
                             ValueError, 'dw_kernel_size must be a positive odd int.*got 2'),
    'bottleneck mid_channels': (RepGhostBottleneck, dict(BOTTLENECK, mid_channels=-8),
                                ValueError, 'mid_channels must be a positive int, got -8'),
    'bottleneck with_cp flag': (RepGhostBottleneck, dict(BOTTLENECK, with_cp='no'), TypeError,
                                "with_cp must be True or False, got 'no'"),
    # SqueezeExcite
    'se ratio zero': (SqueezeExcite, dict(channels=16, se_ratio=0), ValueError,
                      r'se_ratio must be a number in \(0, 1\], got 0'),
    'se channels': (SqueezeExcite, dict(channels=0), ValueError,
                    'channels must be a positive int, got 0'),
    'se act': (SqueezeExcite, dict(channels=16, act_cfg=dict(type='Mish2')), ValueError,
               r"act_cfg=\{'type': 'Mish2'\} is not supported"),
    # ConvNormAct (the final 1x1 conv)
    'conv kernel': (ConvNormAct, dict(in_channels=4, out_channels=8, kernel_size=2),
                    ValueError, 'kernel_size must be a positive odd int.*got 2'),
    'conv norm': (ConvNormAct, dict(in_channels=4, out_channels=8, norm_cfg=dict(type='IN')),
                  ValueError, rf'its type must be one of {NORM_TYPES}'),
    'conv stride': (ConvNormAct, dict(in_channels=4, out_channels=8, stride=-1), ValueError,
                    'stride must be a positive int, got -1'),
    # classifier config
    'classifier width': (repghostnet_classifier_cfg, dict(arch='1.2x'), ValueError,
                         r"arch='1.2x' is unknown"),
    'classifier classes': (repghostnet_classifier_cfg, dict(num_classes=0), ValueError,
                           'num_classes must be a positive int, got 0'),
    'classifier dropout': (repghostnet_classifier_cfg, dict(dropout_rate=1.2), ValueError,
                           r'dropout_rate must be a number in \[0, 1\], got 1.2'),
    # engine
    'hook flag': (RepGhostDeployHook, dict(test='yes'), TypeError,
                  "RepGhostDeployHook test must be True or False, got 'yes'"),
    'hook save flag': (RepGhostDeployHook, dict(save_deploy=1), TypeError,
                       'RepGhostDeployHook save_deploy must be True or False, got 1'),
    'amp dtype': (CPUAmpOptimWrapper, dict(dtype='int8'), ValueError,
                  r"dtype='int8' is not supported .*allowed: \('bfloat16', 'float16'\)"),
    # deploy / utils
    'onnx shape rank': (export_onnx, dict(input_shape=(1, 3, 64)), ValueError,
                        r'input_shape must be 4 positive ints \(N, C, H, W\), got \(1, 3, 64\)'),
    'onnx shape zero': (export_onnx, dict(input_shape=(0, 3, 64, 64)), ValueError,
                        r'got \(0, 3, 64, 64\)'),
    'onnx opset': (export_onnx, dict(opset=9), ValueError,
                   r'opset=9 is not supported; allowed: 11..20'),
    'timing runs': (measure_latency, dict(runs=0), ValueError,
                    'runs must be >= 1 and warmup >= 0, got runs=0, warmup=5'),
    'timing warmup': (measure_interleaved, dict(warmup=-1), ValueError,
                      'got runs=30, warmup=-1'),
}

# defaults for the callables that need more than the kwargs under test
REQUIRED = {
    CPUAmpOptimWrapper: lambda: dict(optimizer=torch.optim.SGD([torch.zeros(1,
                                                                            requires_grad=True)],
                                                               lr=0.1)),
    export_onnx: lambda: dict(model=torch.nn.Identity(), path='/nonexistent/never.onnx',
                              input_shape=(1, 3, 32, 32)),
    measure_latency: lambda: dict(fn=lambda: None),
    measure_interleaved: lambda: dict(fns={'a': lambda: None}),
}


@pytest.mark.parametrize('case', list(CONSTRUCTOR_CASES))
def test_constructor_refuses_bad_value(case):
    factory, kwargs, error, message = CONSTRUCTOR_CASES[case]
    arguments = REQUIRED[factory]() if factory in REQUIRED else {}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        factory(**arguments)


# (tool, argv, message on stderr); each exits with argparse's status 2 before doing anything
CFG = 'configs/cls/repghost_1_0x.py'
TOOL_CASES = {
    'export shape': ('export_onnx', [CFG, 'x.pth', '--out', 'o.onnx', '--shape', '100', '224'],
                     r'--shape \[100, 224\]: H and W must be positive multiples of 32'),
    'export opset': ('export_onnx', [CFG, 'x.pth', '--out', 'o.onnx', '--opset', '9'],
                     r'--opset must be in \[11, 20\], got 9'),
    'export atol': ('export_onnx', [CFG, 'x.pth', '--out', 'o.onnx', '--atol', '0'],
                    '--atol must be > 0, got 0.0'),
    'export latency': ('export_onnx', [CFG, 'x.pth', '--out', 'o.onnx', '--latency', '-3'],
                       r'--latency must be >= 0 runs \(0: off\), got -3'),
    'export suffix': ('export_onnx', [CFG, 'x.pth', '--out', 'o.pth'],
                      "--out must end with .onnx, got 'o.pth'"),
    'reparam suffix': ('reparameterize', [CFG, 'x.pth', 'out.onnx'],
                       "OUT must end with .pth, got 'out.onnx'"),
    'reparam size': ('reparameterize', [CFG, 'x.pth', 'out.pth', '--input-size', '16', '16'],
                     r'--input-size \[16, 16\] is too small: H and W must be >= 32'),
    'convert source': ('convert_weights', ['a.pth', 'b.pth', '--from', 'tf'],
                       r"argument --from: invalid choice: 'tf' \(choose from"),
    'convert layout': ('convert_weights', ['a.pth', 'b.pth', '--from', 'timm', '--layout',
                                           'neck'], r"invalid choice: 'neck'"),
    'flops arch': ('get_flops', ['--arch', '3x'],
                   r"unknown --arch \['3x'\]; allowed: all, 0.5x, 0.58x"),
    'flops shape': ('get_flops', ['--shape', '16', '224'],
                    r'--shape \[16, 224\] is too small: H and W must be >= 32'),
    'tiny coco train': ('make_tiny_coco', ['--train', '0'],
                        r'--train 0 is out of range: use 1..'),
    'tiny coco val': ('make_tiny_coco', ['--val', '-1'], r'--val -1 is out of range: use 1..'),
    'tiny imagenet train': ('make_tiny_imagenet', ['--train', '0'],
                            r'--train 0 is out of range: use 1..'),
    'predictions num': ('show_predictions', [CFG, 'x.pth', '--images', 'd', '--out', 'p.png',
                                             '--num', '17'], r'--num must be in \[1, 16\], got 17'),
    'predictions thr': ('show_predictions', [CFG, 'x.pth', '--images', 'd', '--out', 'p.png',
                                             '--score-thr', '1.5'],
                        r'--score-thr must be in \[0, 1\], got 1.5'),
    'predictions suffix': ('show_predictions', [CFG, 'x.pth', '--images', 'd', '--out', 'p.jpg'],
                           "--out must be a .png file, got 'p.jpg'"),
    'latency runs': ('benchmark_latency', ['--runs', '2'], '--runs must be >= 5, got 2'),
    'latency part': ('benchmark_latency', ['--parts', 'gpu'], r"invalid choice: 'gpu'"),
    'memory iters': ('benchmark_memory', ['--iters', '1'], '--iters must be >= 2, got 1'),
    'memory warmup': ('benchmark_memory', ['--iters', '100', '--warmup', '100'],
                      r'--warmup must be in \[1, 99\] \(below --iters\), got 100'),
    'memory every': ('benchmark_memory', ['--every', '0'],
                     r'--every must be in \[1, 500\] \(--iters\), got 0'),
    'memory config': ('benchmark_memory', ['no/such/config.py'],
                      'config not found: no/such/config.py'),
}


@pytest.mark.parametrize('case', list(TOOL_CASES))
def test_tool_refuses_bad_argument(case, capsys, tmp_path, monkeypatch):
    tool, argv, message = TOOL_CASES[case]
    monkeypatch.chdir(tmp_path)  # nothing may be written; relative outputs would land here
    (tmp_path / 'configs').mkdir()
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).main(argv)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert re.search(message, stderr), stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['configs']
