"""Shared fixtures: deterministic seeds and helpers that make BN folding non-trivial."""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
from typing import Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# the paper's widths and the matching timm model names
TIMM_NAMES = {
    '0.5x': 'repghostnet_050', '0.58x': 'repghostnet_058', '0.8x': 'repghostnet_080',
    '1.0x': 'repghostnet_100', '1.11x': 'repghostnet_111', '1.3x': 'repghostnet_130',
    '1.5x': 'repghostnet_150', '2.0x': 'repghostnet_200',
}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """A Runner built in a test makes its scope the process-wide current one (mmengine's
    DefaultScope); restore the previous state so registry lookups do not depend on test order."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@torch.no_grad()
def randomize_bn_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters in every BN (eval-mode folding test)."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.25)
            module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model


def load_tool(name: str):
    """Import ``tools/<name>.py`` as a module (tools are scripts, not a package)."""
    path = osp.join(REPO_ROOT, 'tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'tools_{name}', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


MIM = osp.join(osp.dirname(sys.executable), 'mim')


def mim(*args, cwd, returncode=0, pythonpath=()):
    """Run ``mim *args`` as a user would (repo on PYTHONPATH); stdout + stderr.

    Asserts the exit status is ``returncode`` (None: any); ``pythonpath`` adds directories.
    """
    env = dict(os.environ, PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               PYTHONPATH=os.pathsep.join([REPO_ROOT, *map(str, pythonpath)]))
    result = subprocess.run([MIM, *args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    output = result.stdout + result.stderr
    assert returncode is None or result.returncode == returncode, (
        f'exit {result.returncode}\n' + result.stdout[-3000:] + result.stderr[-3000:])
    return output


#: what a PyTorch-free deployment must not import
TORCH_AND_OPENMMLAB = ('torch', 'mmcv', 'mmengine', 'mmdet', 'mmpretrain', 'mmrepghost')


def run_tool_without_torch(tool: str, *argv: str) -> subprocess.CompletedProcess:
    """Run ``tools/<tool>.py argv`` in a Python where importing torch, mmcv, mmengine, mmdet,
    mmpretrain or mmrepghost raises ImportError (set before anything else is imported)."""
    script = (f'import runpy, sys\nfor name in {TORCH_AND_OPENMMLAB!r}:\n'
              '    sys.modules[name] = None\n'
              f'sys.argv = [{tool!r}] + {list(argv)!r}\n'
              f'runpy.run_path({osp.join(REPO_ROOT, "tools", tool + ".py")!r}, '
              "run_name='__main__')\n")
    return subprocess.run([sys.executable, '-c', script], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def coco_data_options(data_root):
    """``--cfg-options`` that point a tiny-COCO config's loaders and evaluators at ``data_root``."""
    ann = data_root + 'annotations/instances_val2017.json'
    return [f'train_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']


def relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to the output scale max |a|."""
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()


@torch.no_grad()
def calibrate_bn_(model: nn.Module, input_shape=(4, 3, 64, 64), steps: int = 3,
                  seed: int = 0, inputs: Optional[torch.Tensor] = None) -> nn.Module:
    """BN running statistics of random batches (or of ``inputs``), as after training:
    activations stay O(1)."""
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(steps):
        model(torch.randn(*input_shape, generator=gen) if inputs is None else inputs)
    return model.eval()


@torch.no_grad()
def spread_conv_outputs_(conv: nn.Conv2d, run, std: float, center: bool = False,
                         seed: int = 0) -> None:
    """Re-draw ``conv``'s weights and scale them so that its outputs (less the bias) have
    std ``std`` while ``run()`` executes; ``center`` also sets the bias to give mean 0."""
    nn.init.normal_(conv.weight, generator=torch.Generator().manual_seed(seed))
    outputs = []
    handle = conv.register_forward_hook(lambda module, args, out: outputs.append(out))
    run()
    handle.remove()
    values = torch.cat([(out - conv.bias.view(1, -1, 1, 1)).flatten() for out in outputs])
    conv.weight.mul_(std / values.std())
    if center:
        conv.bias.fill_(-float(values.mean()) * std / float(values.std()))


@torch.no_grad()
def spread_head_scores_(model: nn.Module, logit_std: float = 1.0, seed: int = 0,
                        inputs: Optional[torch.Tensor] = None) -> nn.Module:
    """Make an untrained detector's scores (and masks) spread like a trained one's.

    An untrained mmdet dense head scores every prior about 0.01 (its prior_prob bias, weights
    N(0, 0.01)): near-equal scores make the order of detections a matter of rounding, and
    re-drawn weights saturate the sigmoid at 1.0 (ties again). The classification conv is
    re-drawn and scaled so that its logits have std ``logit_std`` on ``inputs`` (default: a
    random batch); its bias stays (about -4.6), so scores spread below about 0.5, distinct
    in float32. A mask head's logits are centred (an untrained one leaves most masks empty).
    """
    if inputs is None:
        inputs = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(seed))
    model.eval()
    head = getattr(model, 'bbox_head', None)
    if head is not None:
        classes = head.num_base_priors * head.cls_out_channels
        [conv] = [m for name, m in head.named_modules() if isinstance(m, nn.Conv2d)
                  and 'cls' in name and m.out_channels == classes]
        spread_conv_outputs_(conv, lambda: head(model.extract_feat(inputs)), logit_std,
                             seed=seed)
    mask_head = getattr(getattr(model, 'roi_head', None), 'mask_head', None)
    if mask_head is not None:
        from mmrepghost.deploy.end2end import end2end_module
        spread_conv_outputs_(mask_head.conv_logits, lambda: end2end_module(model)(inputs),
                             2.0, center=True, seed=seed)
    return model


@pytest.fixture(scope='session')
def small_coco(tmp_path_factory):
    """Four train and four val images in COCO layout (tools/make_tiny_coco.py)."""
    root = tmp_path_factory.mktemp('data') / 'small_coco'
    load_tool('make_tiny_coco').main(['--out', str(root), '--train', '4', '--val', '4'])
    return str(root) + '/'


def se_block_onnx(dense: int = 32, out: int = 24, squeeze: int = 8, biases: bool = False,
                  concat: bool = False):
    """A hand-made ONNX graph (ModelProto, opset 17, batch/height/width dynamic) of one
    RepGhost-like block: x (16 ch) -> Conv 3x3 s2 (``dense``) -> Relu -> depthwise Conv 3x3
    -> Conv 1x1 (``out``) -> SE (GlobalAveragePool, Conv -> ``squeeze``, Relu, Conv ->
    ``out``, HardSigmoid, Mul) -> Add(itself) -> GlobalAveragePool -> Flatten -> Gemm (10).
    ``biases``: the dense, depthwise and SE-expand convs get biases; ``concat``: the 1x1
    conv's output is also concatenated with itself into a second graph output ``cat``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    initializers = []

    def weight(name, *dims):
        initializers.append(numpy_helper.from_array(
            rng.standard_normal(dims).astype(np.float32), name))
        return name

    def conv(x, name, weights, bias, **attributes):
        inputs = [x, weight(f'{name}_w', *weights)]
        if bias:
            inputs.append(weight(f'{name}_b', weights[0]))
        return helper.make_node('Conv', inputs, [f'{name}_out'], name=name, **attributes)

    nodes = [
        conv('x', 'dense', (dense, 16, 3, 3), biases, kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1]),
        helper.make_node('Relu', ['dense_out'], ['r0'], name='relu0'),
        conv('r0', 'dw', (dense, 1, 3, 3), biases, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
             group=dense),
        conv('dw_out', 'pw', (out, dense, 1, 1), False, kernel_shape=[1, 1]),
        helper.make_node('GlobalAveragePool', ['pw_out'], ['s0'], name='se_pool'),
        conv('s0', 'se_reduce', (squeeze, out, 1, 1), False, kernel_shape=[1, 1]),
        helper.make_node('Relu', ['se_reduce_out'], ['s2'], name='se_relu'),
        conv('s2', 'se_expand', (out, squeeze, 1, 1), biases, kernel_shape=[1, 1]),
        helper.make_node('HardSigmoid', ['se_expand_out'], ['s4'], name='se_gate'),
        helper.make_node('Mul', ['pw_out', 's4'], ['m'], name='se_mul'),
        helper.make_node('Add', ['m', 'm'], ['a'], name='add'),
        helper.make_node('GlobalAveragePool', ['a'], ['p'], name='pool'),
        helper.make_node('Flatten', ['p'], ['f'], name='flatten'),
        helper.make_node('Gemm', ['f', weight('fc_w', 10, out)], ['y'], name='fc', transB=1),
    ]
    outputs = [helper.make_tensor_value_info('y', TensorProto.FLOAT, ['n', 10])]
    if concat:
        nodes.append(helper.make_node('Concat', ['pw_out', 'pw_out'], ['cat'], name='cat',
                                      axis=1))
        outputs.append(helper.make_tensor_value_info('cat', TensorProto.FLOAT,
                                                     ['n', 2 * out, 'h2', 'w2']))
    graph = helper.make_graph(nodes, 'se_block', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, ['n', 16, 'h', 'w'])], outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model
