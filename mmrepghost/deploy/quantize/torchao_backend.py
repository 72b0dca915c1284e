"""INT8 post-training quantization with torchao's PT2E flow, lowered by Inductor on x86.

What is quantized is the *network* of a deployed model, :class:`~mmrepghost.deploy.onnx.
RawOutputs`: a classifier's backbone + neck + head logits, a single-stage detector's
backbone + neck + dense-head maps (``cls_score_<level>...``, ``bbox_pred_<level>...``); box
decoding, score filtering and NMS stay fp32 in mmdet. Two-stage detectors are refused (their
RoI head needs the features, which the network's outputs do not carry).

The flow (:func:`quantize_torchao`)::

    torch.export.export(RawOutputs(model), (1, 3, H, W))            static shape, batch 1
      -> prepare_pt2e(X86InductorQuantizer(default x86 config))       --exclude: None qconfig
      -> calibration on the train split (HistogramObserver activations, per-tensor uint8;
         per-channel symmetric int8 weights; torchao's x86 defaults)
      -> convert_pt2e -> torch.export.export again -> torch.export.save(OUT.pt2)

**Input shape.** The program has one static input shape ``(1, 3, H, W)`` (the *canvas*):
a classifier's test crop (or fixed resize); for a detector the config's test scale padded to
the data preprocessor's ``pad_size_divisor``: a ``Resize(keep_ratio=True)`` to ``(a, b)``
gives images whose long side is at most ``max(a, b)``, in either orientation, so the canvas is
the square ``max(a, b)`` rounded up to the divisor (e.g. ``(1333, 800)`` -> 1344 x 1344;
``(320, 320)`` -> 320 x 320); a fixed ``Resize`` gives its size. Only when the test pipeline
bounds no size (e.g. ``ResizeEdge`` without crop) is the canvas the largest calibration image.
Every calibration image (and, in :func:`evaluate_torchao`, every test batch) is padded at the
bottom/right with the data preprocessor's ``pad_value`` to the canvas, as mmdet pads a batch:
a dense head's maps of the image region are the same and decoding clips to ``img_shape``.
Batches of several images run image by image.

**The file.** ``OUT`` is a ``.pt2`` (``torch.export.save`` of the converted program, q/dq
``quantized_decomposed`` ops with int8 weights folded in) written atomically; before it is
moved into place it is loaded back and checked to compute what was converted. It carries a
JSON description (``mmrepghost_torchao.json``: canvas, output names, classes, layer
precisions). :func:`load_torchao` returns the eager module (``torch.export.load(path)
.module()``; torch alone runs it: the q/dq ops are registered by
``torch.ao.quantization.fx._decomposed``); :func:`compile_torchao` compiles it with
Inductor and ``torch._inductor.config.freezing`` (torchao's x86 int8 lowering, registered
when torchao's x86 quantizer is imported: oneDNN ``qconv``/``qlinear`` kernels; without it
Inductor would fold the int8 weights back to fp32), the path for latency.

**Layers.** Every conv/linear of the network is a :class:`~.common.LayerRecord` named by its
module path in the model (``backbone.conv_stem``, ``backbone.blocks.3.0.se.conv_reduce``,
``head.layers.0.fc``, ``bbox_head.retina_cls``); a module called several times (a detector
head shared over FPN levels) is one record. Its precision is read back from the converted
graph (int8 when its weight is a dequantized int8 tensor), not assumed. ``--exclude``
patterns (``fnmatch`` on those names) keep layers fp32 with the quantizer's
``set_module_name_qconfig(path, None)``.

**auto_exclude** keeps in fp32 the layers that measurements show are slower or too lossy in
int8, in one pass over a candidate quantized with every (not user-excluded) layer int8:

* *time*: the fp32 network and the int8 candidate are compiled once each (Inductor,
  freezing; the fp32 one is reused for the latency, the candidate too when nothing is
  excluded), then run under ``torch.profiler`` (batch 1, ``threads``, after warm-up,
  ``max(runs, 5)`` calls each). Each conv/linear runs as one extern kernel
  (``mkldnn::_convolution_pointwise``, ``onednn::qconv_pointwise``,
  ``onednn::qlinear_pointwise``...) called directly by the compiled graph. The kernels are
  matched to the layers by the shapes the profiler records (the layer's input and weight
  shapes; Inductor may run parallel branches in another order than the graph's, so a kernel
  goes to the first unmatched layer in graph order that fits), and a layer's time is the
  median over the calls. A kernel includes what Inductor fused into it (bias, ReLU, a
  residual add, requantization of the output); the generated quantize/dequantize and
  element-wise kernels between layers are not attributed to any layer (they show in the
  whole-network latency, where the all-int8 candidate is timed too: ``int8_all_ms``). If the
  kernels cannot be matched, the times are left out and the decision uses the error only (a
  note says so).
* *error*: each layer alone on the first :data:`AUTO_IMAGES` calibration images: its fp32
  input (captured by a forward hook on the fp32 model) goes through the input's calibrated
  quantize/dequantize and the int8-dequantized weight of the candidate graph, and the output
  is compared with the fp32 layer's: SQNR (and cosine) over all those images.
* a layer stays fp32 when its SQNR is below :data:`MIN_LAYER_SQNR_DB`; the network is then
  prepared again without those layers, its observers filled with the states of the first
  calibration pass (the same tensors seen on the same images: the result equals a new
  calibration; observers of tensors the candidate did not observe, e.g. an fp32 layer's
  output that an int8 layer now reads, need one more pass over the images, in which the
  filled observers do nothing), converted and compiled.
* a layer whose int8 kernel is slower than its fp32 one by more than :data:`SLOWER_RATIO`
  and :data:`SLOWER_MIN_MS` is a candidate for fp32 too, but its kernel time does not see
  the quantize/dequantize kernels an fp32 layer adds between int8 neighbours (nor the
  int8-in/int8-out fusions it breaks). So the network with those layers fp32 as well is
  quantized and compiled, and timed interleaved against the one without (batch 1,
  ``threads``): they stay fp32 only if the whole network is faster; otherwise their records
  say so and they stay int8 (on RepGhostNet 1.0x, depthwise 3x3 kernels are often slower in
  int8 alone, yet the network is slower with them fp32).

The records keep the candidate's measurements (the times of a layer's neighbours can change
once it is fp32); the latency also times the all-int8 candidate (``int8_all_ms``) when
another program is kept.

For RepGhostNet 1.0x at 224 auto_exclude costs one to three Inductor compiles beyond the
latency's (the candidate; the program without the lossy layers; the one without the slow
ones too; the latency reuses them), the profiled and timed runs and eager passes over
:data:`AUTO_IMAGES` images: under a minute more than without it on 2 CPU cores (a compile
takes about 12 s there when the machine is otherwise idle).

**Latency** (``runs`` > 0): the fp32 network and the int8 program, both compiled (Inductor,
freezing), batch 1, ``threads`` threads, timed interleaved in one loop
(:func:`~mmrepghost.utils.timing.measure_interleaved`, 3 warm-up rounds); ``runs=0`` skips
compiling and timing (the report says so). **Outputs**: cosine and SQNR of the int8
program's outputs (eager) against the fp32 network's on the first :data:`OUTPUT_IMAGES`
calibration images, all outputs flattened together.

:func:`evaluate_torchao` runs the config's test set and test evaluator as ``mim test`` does,
with the network of a model built from the config replaced by the quantized program, in
eager mode (the q/dq reference graph, numerically what the compiled int8 kernels compute up
to rounding; slower, but nothing is compiled per input size).
"""
import importlib
import json
import math
import os.path as osp
import re
import statistics
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from mmrepghost_runtime.files import atomic_write
from ...utils.timing import measure_interleaved
from ..inductor import compile_inductor
from ..model_loading import build_model, load_trained_model
from ..onnx import RawOutputs
from ..preprocess_spec import preprocess_spec
from .common import (LayerRecord, QuantizeError, QuantizeReport, calibration_inputs, cosine,
                     layer_kind, match_patterns, require, sqnr_db)

__all__ = ['quantize_torchao', 'quantize_module', 'load_torchao', 'compile_torchao',
           'evaluate_torchao', 'decide_auto_exclude', 'MIN_LAYER_SQNR_DB', 'SLOWER_RATIO',
           'SLOWER_MIN_MS', 'AUTO_IMAGES', 'OUTPUT_IMAGES', 'FORMAT', 'META_FILE']

#: auto_exclude: a layer whose output SQNR (the layer alone, int8 vs fp32) is below this
#: stays fp32 (20 dB: the quantization noise is a hundredth of the signal's power)
MIN_LAYER_SQNR_DB = 20.0
#: auto_exclude: a layer whose int8 kernel takes more than SLOWER_RATIO x the fp32 kernel's
#: time, and at least SLOWER_MIN_MS more, stays fp32 (the margins keep timer noise out)
SLOWER_RATIO = 1.10
SLOWER_MIN_MS = 0.002
#: calibration images the per-layer errors are measured on
AUTO_IMAGES = 8
#: calibration images the network outputs are compared on
OUTPUT_IMAGES = 4
#: the description stored in the .pt2 file (torch.export.save's extra_files)
META_FILE = 'mmrepghost_torchao.json'
FORMAT = 'mmrepghost-torchao-int8/1'

_WEIGHTED_TARGETS = ('aten.conv1d.default', 'aten.conv2d.default', 'aten.linear.default')
_WEIGHTED_KERNEL = re.compile(r'conv|linear|addmm|(^|::)mm$|bmm')
_QUANT_OPS = ('quantize_per_tensor', 'dequantize_per_tensor', 'quantize_per_channel',
              'dequantize_per_channel')


def _require_torchao():
    """torchao's PT2E pieces; importing the x86 quantizer registers its Inductor passes."""
    require('torchao', 'torchao', 'the torchao backend')
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)
    return prepare_pt2e, convert_pt2e, X86InductorQuantizer, \
        get_default_x86_inductor_quantization_config


# ----------------------------------------------------------------------------- the inputs
def _check_paths(config: str, checkpoint: str, out: str, overwrite: bool) -> None:
    target = osp.realpath(out)
    for what, path in (('CHECKPOINT', checkpoint), ('CONFIG', config)):
        if isinstance(path, str) and osp.realpath(path) == target:
            raise QuantizeError(f'--out {out!r} is the input {what}; write the int8 program '
                                'to another file (the input is never written over)')
    if not str(out).endswith('.pt2'):
        raise QuantizeError(f'--out {out!r}: the torchao backend writes a torch.export '
                            'program, a .pt2 file (e.g. model_int8.pt2)')
    if osp.exists(out) and not overwrite:
        raise FileExistsError(f'{out} exists; pass --force (overwrite=True) to replace it')


def _load_deployed(config: str, checkpoint: str):
    loaded = load_trained_model(config, checkpoint)
    if not loaded.is_deploy:
        raise QuantizeError(f'{checkpoint} still has training branches (the RepGhost '
                            're-parameterization is not fused); run tools/reparameterize.py '
                            'first and quantize its *_deploy.pth')
    if hasattr(loaded.model, 'roi_head'):
        raise QuantizeError(f'{type(loaded.model).__name__} is a two-stage detector; the '
                            'torchao backend quantizes classifiers and single-stage '
                            'detectors (their RoI head needs the features, which the '
                            'quantized network does not output); use --backend onnxruntime')
    return loaded


def _padded(size: int, divisor: int) -> int:
    return int(math.ceil(size / divisor) * divisor)


def _fixed_canvas(spec: dict) -> Optional[Tuple[int, int]]:
    """The (H, W) every test image fits in, from the preprocessing (see the module doc)."""
    divisor = max(int(spec.get('pad_divisor') or 1), 1)
    if spec.get('center_crop'):
        w, h = spec['center_crop']
        return _padded(h, divisor), _padded(w, divisor)
    resize = spec.get('resize') or {}
    if resize.get('type') == 'fixed':
        w, h = resize['size']
        return _padded(h, divisor), _padded(w, divisor)
    if resize.get('type') == 'keep_ratio':
        side = _padded(max(resize['scale']), divisor)
        return side, side
    return None


def _to_canvas(batch, canvas: Tuple[int, int], pad_value: float, what: str) -> Tensor:
    """``batch`` (N, 3, h, w) padded at the bottom/right to ``canvas`` (a float32 tensor)."""
    batch = torch.as_tensor(batch, dtype=torch.float32)
    h, w = batch.shape[-2:]
    if h > canvas[0] or w > canvas[1]:
        raise QuantizeError(f'{what} is {h}x{w}, larger than the quantized program\'s fixed '
                            f'input {canvas[0]}x{canvas[1]} (see the torchao backend\'s input '
                            'shape: the config\'s test scale)')
    if (h, w) == tuple(canvas):
        return batch.contiguous()
    return nn.functional.pad(batch, (0, canvas[1] - w, 0, canvas[0] - h), value=pad_value)


def _batches(paths: Sequence[str], spec: dict, canvas, limit: Optional[int] = None
             ) -> Iterator[Tensor]:
    for i, batch in enumerate(calibration_inputs(paths[:limit], spec, nan_padding=False)):
        yield _to_canvas(batch, canvas, spec['pad_value'], f'calibration image {paths[i]}')


# ----------------------------------------------------------------------------- the layers
@dataclass
class _Layer:
    name: str  # the module's name in the model
    paths: List[str] = field(default_factory=list)  # as the exported graph names it
    nodes: List[str] = field(default_factory=list)  # conv/linear nodes, graph order
    kind: str = ''
    shapes: List[Tuple[int, ...]] = field(default_factory=list)  # input shape per call


def _is_weighted(node) -> bool:
    return node.op == 'call_function' and str(node.target) in _WEIGHTED_TARGETS


def _is_quant_op(node, names=_QUANT_OPS) -> bool:
    return (isinstance(node, torch.fx.Node) and node.op == 'call_function'
            and str(node.target).startswith('quantized_decomposed.')
            and str(node.target).split('.')[1] in names)


def _raw_path(node) -> str:
    stack = node.meta.get('nn_module_stack') or {}
    if not stack:
        return node.name
    path = list(stack.values())[-1][0]
    return path[len("L['self']."):] if path.startswith("L['self'].") else path


def _module_path(node) -> str:
    """The path of the module a node comes from (without :func:`_split_calls`'s suffix)."""
    return re.sub(r'@\d+$', '', _raw_path(node))


def _split_calls(gm: torch.fx.GraphModule) -> None:
    """Tell the calls of a module called several times apart (a detector head's convs, run
    once per FPN level): ``torch.export`` keys the n-th call ``...@n`` in ``nn_module_stack``
    but gives every call the same path, and the quantizer's pattern matching, which groups
    nodes by that path, would take the calls for one partition with several outputs (and
    refuse it). The n-th call's paths get the suffix ``@n`` too."""
    for node in gm.graph.nodes:
        stack = node.meta.get('nn_module_stack')
        if not stack:
            continue
        node.meta['nn_module_stack'] = {
            key: ((path + key[key.rindex('@'):], kind)
                  if re.search(r'@\d+$', key) and not re.search(r'@\d+$', path)
                  else (path, kind))
            for key, (path, kind) in stack.items()}


def _shape(value) -> Tuple[int, ...]:
    val = value.meta.get('val') if isinstance(value, torch.fx.Node) else None
    return tuple(int(s) for s in val.shape) if isinstance(val, Tensor) else ()


def _kind(node) -> str:
    """:func:`.common.layer_kind` of an aten conv/linear node (output size from its meta)."""
    weight = _shape(node.args[1])
    if str(node.target) == 'aten.linear.default':
        return layer_kind('linear', weight)
    args = list(node.args) + [None] * 7
    return layer_kind('conv', weight, args[6] or 1, args[3] or [1], _shape(node)[2:])


def _layers(gm: torch.fx.GraphModule, wrapper: RawOutputs) -> List[_Layer]:
    """The conv/linear layers of ``gm`` (exported from ``wrapper``) by module, graph order."""
    names = {id(module): name for name, module in wrapper.model.named_modules()}
    layers: Dict[str, _Layer] = OrderedDict()
    for node in gm.graph.nodes:
        if not _is_weighted(node):
            continue
        path = _module_path(node)
        try:
            name = names.get(id(wrapper.get_submodule(path)), path)
        except AttributeError:
            name = path
        layer = layers.setdefault(name, _Layer(name))
        if path not in layer.paths:
            layer.paths.append(path)
        layer.nodes.append(node.name)
        layer.shapes.append(_shape(node.args[0]))
        if not layer.kind:
            layer.kind = _kind(node)
    for layer in layers.values():
        if len(layer.nodes) > 1:
            layer.kind += f' (x{len(layer.nodes)} calls)'
    return list(layers.values())


def _weighted_nodes(gm: torch.fx.GraphModule) -> Dict[str, List[torch.fx.Node]]:
    """Module path -> its conv/linear nodes in ``gm``, graph order."""
    found: Dict[str, List[torch.fx.Node]] = defaultdict(list)
    for node in gm.graph.nodes:
        if _is_weighted(node):
            found[_module_path(node)].append(node)
    return found


def _node_is_int8(node) -> bool:
    return _is_quant_op(node.args[1], ('dequantize_per_channel', 'dequantize_per_tensor'))


def _precisions(converted: torch.fx.GraphModule, layers: List[_Layer]) -> Dict[str, str]:
    """Layer name -> 'int8' / 'fp32' (/ 'mixed') as the converted graph computes it."""
    by_path = _weighted_nodes(converted)
    result = {}
    for layer in layers:
        flags = {_node_is_int8(node) for path in layer.paths for node in by_path.get(path, ())}
        result[layer.name] = ('mixed' if len(flags) > 1 else 'int8' if flags == {True}
                              else 'fp32')
    return result


# ----------------------------------------------------------------------------- quantizing
@dataclass
class _Calibrated:
    """What a calibration pass observed: the observers' states, by the node they observe."""
    images: int
    states: Optional[Dict[str, Tuple[type, dict]]]  # None: not transferable


def _observers(prepared: torch.fx.GraphModule) -> Optional[Dict[str, nn.Module]]:
    """Observer modules by what they observe ('+'-joined names of the observed nodes: an
    observer may be shared); None when that does not tell them apart."""
    observed: Dict[int, List[str]] = defaultdict(list)
    modules: Dict[int, nn.Module] = {}
    for node in prepared.graph.nodes:
        module = prepared.get_submodule(node.target) if node.op == 'call_module' else None
        if not hasattr(module, 'calculate_qparams'):
            continue
        source = node.args[0] if node.args else None
        if not isinstance(source, torch.fx.Node):
            return None
        observed[id(module)].append(source.name)  # one module may be called by several nodes
        modules[id(module)] = module
    found = {'+'.join(sorted(set(names))): modules[key] for key, names in observed.items()}
    return found if len(found) == len(observed) else None


def _quantize(program, exclude_paths: Sequence[str], batches: Callable[[], Iterator[Tensor]],
              calibrated: Optional[_Calibrated] = None
              ) -> Tuple[torch.fx.GraphModule, _Calibrated]:
    """prepare_pt2e -> calibration -> convert_pt2e; (converted, what was observed).

    With ``calibrated`` (a pass over the same images, of the same exported program, with
    other layers excluded) an observer of a tensor observed then is filled with its state
    instead of seeing the images again: it would see the same tensors, so the result is the
    same. Observers of tensors not observed then (an fp32 layer's output that an int8 layer
    now reads) need a pass over the images, in which the filled ones do nothing.
    """
    prepare_pt2e, convert_pt2e, X86InductorQuantizer, default_config = _require_torchao()
    quantizer = X86InductorQuantizer().set_global(default_config())
    gm = program.module()
    _split_calls(gm)
    excluded = set(exclude_paths)
    for path in dict.fromkeys(_raw_path(node) for node in gm.graph.nodes
                              if _is_weighted(node)):
        if re.sub(r'@\d+$', '', path) in excluded:
            quantizer.set_module_name_qconfig(path, None)
    prepared = prepare_pt2e(gm, quantizer)
    observers = _observers(prepared)
    filled = {}
    if calibrated is not None and calibrated.states is not None and observers is not None:
        filled = {name: module for name, module in observers.items()
                  if name in calibrated.states and type(module) is calibrated.states[name][0]}
        for name, module in filled.items():
            module.load_state_dict(calibrated.states[name][1])
    images = calibrated.images if filled else 0
    if not filled or len(filled) < len(observers):
        for module in filled.values():  # pass through, keep the state
            module.forward = _identity
        try:
            images = 0
            with torch.no_grad():
                for batch in batches():
                    prepared(batch)
                    images += 1
        finally:
            for module in filled.values():
                del module.forward
        if images == 0:
            raise QuantizeError('no calibration images: pass at least one')
    states = None if observers is None else {
        name: (type(module), {k: v.clone() for k, v in module.state_dict().items()})
        for name, module in observers.items()}
    return convert_pt2e(prepared), _Calibrated(images, states)


def _identity(x):
    return x


def _flat(outputs) -> List[Tensor]:
    if isinstance(outputs, Tensor):
        return [outputs]
    return [t for item in outputs for t in _flat(item)]


def _compare(reference: Sequence[Tensor], other: Sequence[Tensor]) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(reference, other))


def _save(program, out: str, meta: dict, example: Tensor, expected: List[Tensor],
          overwrite: bool) -> nn.Module:
    """``torch.export.save`` atomically; the file is loaded back and checked before the move."""
    with atomic_write(out, overwrite) as tmp:
        with open(tmp, 'wb') as f:  # a file object: torch.export wants a '.pt2' name
            torch.export.save(program, f, extra_files={META_FILE: json.dumps(meta)})
        module = load_torchao(tmp)
        with torch.no_grad():
            got = _flat(module(example))
        scale = max(float(t.abs().max()) for t in expected) or 1.0
        if len(got) != len(expected) or _compare(expected, got) > 1e-4 * scale:
            raise RuntimeError(f'the saved program {out} does not compute what was '
                               'converted (loaded back before it was moved into place)')
    return module


# ----------------------------------------------------------------------------- measuring
class _Threads:
    def __init__(self, threads: int) -> None:
        self.threads, self.saved = threads, None

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def _kernel_times(compiled: Callable, example: Tensor, runs: int,
                  nodes: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]]
                  ) -> Optional[Dict[str, float]]:
    """Median ms of the conv/linear kernel of each of ``nodes`` (name -> (input shape,
    weight shape), graph order) in the compiled graph, or None when a kernel matches none.

    Inductor may run independent branches in another order than the graph's, so a kernel
    goes to the first node not yet matched whose input shape and weight shape (a packed
    linear weight is recorded transposed) are among the kernel's recorded input shapes. A
    node without a kernel of its own (e.g. a tiny linear Inductor generates code for) is
    left out of the result.
    """
    for _ in range(3):
        compiled(example)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                record_shapes=True) as prof:
        for _ in range(runs):
            compiled(example)
    calls: Dict[int, List] = defaultdict(list)
    for event in prof.events():
        parent = event.cpu_parent
        if parent is not None and parent.name.startswith('## Call CompiledFxGraph') \
                and _WEIGHTED_KERNEL.search(event.name):
            calls[parent.id].append(event)
    per_call = [events for _, events in sorted(calls.items())]
    names = [[event.name for event in events] for events in per_call]
    if len(per_call) != runs or any(n != names[0] for n in names):
        return None
    left = dict(nodes)
    matched = []
    for event in per_call[0]:
        shapes = [tuple(s) for s in event.input_shapes]
        node = next((name for name, (x, w) in left.items()
                     if x in shapes and (w in shapes or (len(w) == 2 and w[::-1] in shapes))),
                    None)
        if node is None:
            return None
        matched.append(node)
        del left[node]
    return {node: statistics.median(events[i].cpu_time_total for events in per_call) / 1e3
            for i, node in enumerate(matched)}


def _const(gm: torch.fx.GraphModule, value, env: Dict):
    """Evaluate ``value`` (a node of constants and q/dq ops, ``env`` for the others)."""
    if isinstance(value, (list, tuple)):
        return type(value)(_const(gm, v, env) for v in value)
    if not isinstance(value, torch.fx.Node):
        return value
    if value in env:
        return env[value]
    if value.op == 'get_attr':
        target = gm
        for part in value.target.split('.'):
            target = getattr(target, part)
        return target
    if value.op == 'call_function':
        args = _const(gm, value.args, env)
        kwargs = {k: _const(gm, v, env) for k, v in value.kwargs.items()}
        return value.target(*args, **kwargs)
    raise KeyError(value.name)


def _fp32_source(node):
    """The node feeding ``node`` through quantize/dequantize ops (the fp32 producer)."""
    while _is_quant_op(node):
        node = node.args[0]
    return node


@torch.no_grad()
def _layer_errors(model: nn.Module, wrapper: RawOutputs, candidate: torch.fx.GraphModule,
                  layers: List[_Layer], batches: Iterator[Tensor]) -> Dict[str, Tuple]:
    """Layer name -> (SQNR dB, cosine) of the layer alone, int8 vs fp32 (see module doc)."""
    by_path = _weighted_nodes(candidate)
    position = {node: i for i, node in enumerate(candidate.graph.nodes)}
    todo = {}
    for layer in layers:
        found = sorted((n for p in layer.paths for n in by_path.get(p, ())),
                       key=position.__getitem__)
        try:
            model.get_submodule(layer.name)
        except AttributeError:  # not a module of the model: no hook, no measurement
            continue
        if found and all(_node_is_int8(n) for n in found):
            todo[layer.name] = found
    sums = {name: np.zeros(4) for name in todo}  # signal, noise, a.b, b.b
    captured: Dict[str, List] = defaultdict(list)
    handles = [model.get_submodule(name).register_forward_hook(  # copies: ReLU(inplace)
        lambda module, args, output, name=name: captured[name].append(
            (args[0].clone(), output.clone())))
        for name in todo]
    try:
        for batch in batches:
            captured.clear()
            wrapper(batch)
            for name, found in list(todo.items()):
                if len(captured[name]) != len(found):
                    todo.pop(name)
                    continue
                for node, (x, reference) in zip(found, captured[name]):
                    env = {_fp32_source(node.args[0]): x}
                    args = _const(candidate, node.args, env)
                    got = node.target(*args, **_const(candidate, node.kwargs, env))
                    a, b = reference.double(), got.double()
                    sums[name] += [float((a * a).sum()), float(((a - b) ** 2).sum()),
                                   float((a * b).sum()), float((b * b).sum())]
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for name in todo:
        signal, noise, ab, bb = sums[name]
        sqnr = float('inf') if noise == 0 else 10 * math.log10(max(signal, 1e-30) / noise)
        denominator = math.sqrt(signal * bb)
        result[name] = (sqnr, ab / denominator if denominator else 1.0)
    return result


def _layer_times(compiled: Callable, gm: torch.fx.GraphModule, layers: List[_Layer],
                 example: Tensor, runs: int) -> Optional[Dict[str, float]]:
    """Layer name -> ms (summed over its calls) from :func:`_kernel_times`, or None.

    ``gm`` is the fp32 exported graph ``layers`` were read from.
    """
    node_of = {node: layer for layer in layers for node in layer.nodes}
    nodes = {node.name: (_shape(node.args[0]), _shape(node.args[1]))
             for node in gm.graph.nodes if node.name in node_of}
    times = _kernel_times(compiled, example, runs, nodes)
    if times is None:
        return None
    result: Dict[str, float] = defaultdict(float)
    for node, ms in times.items():
        result[node_of[node].name] += ms
    return dict(result)


def decide_auto_exclude(records: Sequence[LayerRecord],
                        min_sqnr_db: float = MIN_LAYER_SQNR_DB,
                        slower_ratio: float = SLOWER_RATIO,
                        slower_min_ms: float = SLOWER_MIN_MS) -> Dict[str, str]:
    """Layer name -> why it stays fp32, for the int8 ``records`` whose measurements say so.

    A layer without a measurement is not judged on it; user-excluded (fp32) records are
    skipped.
    """
    decided = {}
    for r in records:
        if r.precision != 'int8':
            continue
        if r.sqnr_db is not None and r.sqnr_db < min_sqnr_db:
            decided[r.name] = (f'auto: too lossy in int8 (layer SQNR {r.sqnr_db:.1f} dB < '
                               f'{min_sqnr_db:g} dB)')
        elif (r.int8_ms is not None and r.fp32_ms is not None
              and r.int8_ms > r.fp32_ms * slower_ratio
              and r.int8_ms - r.fp32_ms >= slower_min_ms):
            decided[r.name] = (f'auto: int8 kernel slower ({r.int8_ms:.3f} ms vs '
                               f'{r.fp32_ms:.3f} ms fp32)')
    return decided


# ----------------------------------------------------------------------------- compiling
def quantize_module(module: nn.Module, batches: Sequence[Tensor], example: Tensor
                    ) -> nn.Module:
    """The int8 program (eager module) of a deployed ``module`` exported at ``example``'s
    static shape, calibrated on ``batches`` (of that shape): what :func:`quantize_torchao`
    does, without files or checks (the benchmark's networks)."""
    wrapper = RawOutputs(module).eval()
    with torch.no_grad():
        program = torch.export.export(wrapper, (example, ))
    converted, _ = _quantize(program, (), lambda: iter(batches))
    return torch.export.export(converted, (example, )).module()


def compile_torchao(module: nn.Module) -> Callable[[Tensor], object]:
    """:func:`mmrepghost.deploy.inductor.compile_inductor` with torchao's x86 lowering loaded.

    For an int8 program of :func:`load_torchao` this compiles to oneDNN int8 conv/linear
    kernels (importing torchao's x86 quantizer registers its Inductor passes); the fp32
    network compiles the same way (the latency baseline).
    """
    _require_torchao()
    return compile_inductor(module)


def load_torchao(path: str) -> nn.Module:
    """The int8 program of ``path`` (a .pt2 of :func:`quantize_torchao`) as an eager module.

    ``module(images)`` -> tuple of tensors (the network's outputs); ``images`` is
    ``(1, 3, H, W)`` with the canvas ``module.mmrepghost_meta['input_shape']``. The file's
    description is ``module.mmrepghost_meta`` (empty for other .pt2 files). Running it eager
    needs only torch (its ``quantized_decomposed`` ops are torch's); compiling it to int8
    kernels (:func:`compile_torchao`) needs torchao.
    """
    importlib.import_module('torch.ao.quantization.fx._decomposed')  # registers the q/dq ops
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} does not exist')
    extra = {META_FILE: ''}
    with open(path, 'rb') as f:  # a file object: the name need not end in .pt2
        program = torch.export.load(f, extra_files=extra)
    module = program.module()
    module.mmrepghost_meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    return module


# ----------------------------------------------------------------------------- the entry
def quantize_torchao(config: str, checkpoint: str, out: str, calib_paths: Sequence[str],
                     exclude: Sequence[str] = (), auto_exclude: bool = False,
                     threads: int = 1, runs: int = 20, overwrite: bool = False,
                     log: Callable[[str], None] = print) -> QuantizeReport:
    """Quantize the network of the deploy ``checkpoint`` of ``config`` to ``out`` (.pt2).

    ``calib_paths``: calibration images (``common.calibration_paths``: the train split).
    ``exclude``: shell-style patterns of layer names kept fp32 (``QuantizeError`` for one
    that matches no conv/linear). ``auto_exclude``: also keep fp32 what the measurements
    say (module doc; needs ``runs`` >= 1). ``threads``/``runs``: the latency measurement
    (batch 1; ``runs=0`` skips compiling and timing). Returns the report (not written).

    Raises:
        QuantizeError: a train-structure checkpoint, a two-stage detector, ``out`` equal to
            the checkpoint or config or not a ``.pt2``, an exclude pattern matching nothing,
            no calibration images, an image larger than the fixed input shape.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        ImportError: torchao is missing (the message names ``pip install torchao``).
    Nothing is written unless everything succeeded.
    """
    _require_torchao()
    _check_paths(config, checkpoint, out, overwrite)
    for name, value, least in (('threads', threads, 1), ('runs', runs, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise QuantizeError(f'{name} = {value!r}: expected an integer >= {least}')
    if auto_exclude and runs < 1:
        raise QuantizeError('auto_exclude measures the layers\' int8 and fp32 kernels: it '
                            'needs runs >= 1')
    calib_paths = list(calib_paths)
    if not calib_paths:
        raise QuantizeError('no calibration images: pass at least one')
    loaded = _load_deployed(config, checkpoint)
    cfg = loaded.cfg
    spec = preprocess_spec(cfg)
    canvas = _fixed_canvas(spec)
    if canvas is None:
        shapes = [b.shape[-2:] for b in calibration_inputs(calib_paths, spec, False)]
        canvas = (max(s[0] for s in shapes), max(s[1] for s in shapes))
    wrapper = RawOutputs(loaded.model).eval()
    example = next(_batches(calib_paths, spec, canvas, 1))
    output_names = wrapper.output_names(example)
    log(f'exporting the network at 1x3x{canvas[0]}x{canvas[1]}')
    with torch.no_grad():
        program = torch.export.export(wrapper, (example, ))
    layers = _layers(program.graph_module, wrapper)
    if not layers:
        raise QuantizeError(f'{config}: the network has no conv/linear layer to quantize')
    user = match_patterns([layer.name for layer in layers], list(exclude),
                          'conv/linear layers') if exclude else {}
    by_name = {layer.name: layer for layer in layers}

    def quantize(excluded, calibrated=None):
        paths = [p for name in excluded for p in by_name[name].paths]
        return _quantize(program, paths, lambda: _batches(calib_paths, spec, canvas),
                         calibrated)

    log(f'calibrating on {len(calib_paths)} train images'
        + (f', {len(user)} layers excluded' if user else ''))
    converted, calibrated = quantize(user)
    reasons = {name: f'--exclude {pattern!r}' for name, pattern in user.items()}
    notes = []
    measured = {}
    compiled_fp32 = compiled_int8 = compiled_candidate = None
    if auto_exclude:
        auto = _auto_exclude(loaded.model, wrapper, program, converted, layers, calib_paths,
                             spec, canvas, example, threads, runs, reasons,
                             lambda names: quantize(names, calibrated)[0], notes, log)
        converted, compiled_int8 = auto.converted, auto.compiled
        compiled_fp32, compiled_candidate = auto.compiled_fp32, auto.compiled_candidate
        measured = auto.measured
        reasons.update(auto.fp32)
        reasons.update(auto.int8)
    precisions = _precisions(converted, layers)
    records = []
    for layer in layers:
        precision = precisions[layer.name]
        reason = reasons.get(layer.name, '')
        if precision == 'fp32' and not reason:
            reason = 'not quantized by the X86InductorQuantizer recipe'
        elif precision == 'int8' and auto_exclude and not reason:
            reason = 'auto: kept int8'
        fp32_ms, int8_ms, sqnr, cos = measured.get(layer.name, (None,) * 4)
        records.append(LayerRecord(layer.name, layer.kind, precision, reason, fp32_ms,
                                   int8_ms, sqnr, cos))

    log('saving ' + out)
    with torch.no_grad():
        final = torch.export.export(converted, (example, ))
        expected = _flat(final.module()(example))
    meta = dict(format=FORMAT, input_shape=[1, 3, *canvas], output_names=output_names,
                is_detector=wrapper.is_detector, pad_value=spec['pad_value'],
                classes=list((loaded.meta.get('dataset_meta') or {}).get('classes') or []),
                config=str(config), checkpoint=str(checkpoint),
                layers={r.name: r.precision for r in records})
    int8_module = _save(final, out, meta, example, expected, overwrite)

    outputs = _output_agreement(wrapper, int8_module, calib_paths, spec, canvas)
    latency = {}
    if runs:
        log(f'compiling (Inductor, freezing) and timing fp32 vs int8, {threads} thread(s)')
        compiled_fp32 = compiled_fp32 or compile_torchao(program.module())
        latency = _latency(compiled_fp32, compiled_int8 or compile_torchao(int8_module),
                           compiled_candidate, example, threads, runs)
    else:
        notes.append('latency not measured (runs=0)')
    notes.append(f'input: 1x3x{canvas[0]}x{canvas[1]} (static; smaller images padded at the '
                 f'bottom/right with {spec["pad_value"]:g})')
    calibration = dict(split='train', images=calibrated.images, input_shape=[1, 3, *canvas],
                       method='torchao PT2E X86InductorQuantizer: HistogramObserver per-tensor '
                              'uint8 activations, per-channel symmetric int8 weights')
    return QuantizeReport(backend='torchao', model=str(checkpoint), out=str(out),
                          config=str(config), calibration=calibration, layers=records,
                          latency=latency, outputs=outputs, notes=notes)


@dataclass
class _AutoResult:
    converted: torch.fx.GraphModule  # the program kept
    compiled: Callable  # it, compiled
    compiled_fp32: Callable
    compiled_candidate: Optional[Callable]  # the all-int8 candidate when it is not kept
    measured: Dict[str, Tuple]  # layer -> (fp32 ms, int8 ms, SQNR, cosine)
    fp32: Dict[str, str]  # layer kept fp32 -> why
    int8: Dict[str, str]  # layer kept int8 although its kernel was slower -> why


def _auto_exclude(model, wrapper, program, candidate, layers, calib_paths, spec, canvas,
                  example, threads, runs, reasons, quantize, notes, log) -> _AutoResult:
    """Measure the candidate, decide (:func:`decide_auto_exclude`), quantize again, and
    keep the kernel-time exclusions only if the whole network runs faster with them."""
    log(f'auto-exclude: per-layer error on {min(AUTO_IMAGES, len(calib_paths))} images')
    errors = _layer_errors(model, wrapper, candidate, layers,
                           _batches(calib_paths, spec, canvas, AUTO_IMAGES))
    log('auto-exclude: compiling fp32 and the int8 candidate (Inductor, freezing) and '
        'profiling their kernels')
    compiled_fp32 = compile_torchao(program.module())
    compiled_candidate = _compiled_program(candidate, example)
    with _Threads(threads):
        fp32_times = _layer_times(compiled_fp32, program.graph_module, layers, example,
                                  max(runs, 5))
        int8_times = _layer_times(compiled_candidate, program.graph_module, layers, example,
                                  max(runs, 5))
    if fp32_times is None or int8_times is None:
        notes.append('auto-exclude: the compiled kernels could not be matched to the layers; '
                     'decided on the layer errors only')
        fp32_times, int8_times = fp32_times or {}, int8_times or {}
    else:
        untimed = [layer.name for layer in layers if layer.name not in fp32_times]
        if untimed:
            notes.append(f'auto-exclude: {len(untimed)} layers have no fp32 kernel of their own '
                         f'(Inductor generated code for them, e.g. {untimed[0]}): not timed')
    precisions = _precisions(candidate, layers)
    measured, probes = {}, []
    for layer in layers:
        sqnr, cos = errors.get(layer.name, (None, None))
        int8_ms = int8_times.get(layer.name) if precisions[layer.name] == 'int8' else None
        measured[layer.name] = (fp32_times.get(layer.name), int8_ms, sqnr, cos)
        probes.append(LayerRecord(layer.name, layer.kind, precisions[layer.name], '',
                                  fp32_times.get(layer.name), int8_ms, sqnr, cos))
    decided = decide_auto_exclude(probes)
    lossy = {name: why for name, why in decided.items()
             if measured[name][2] is not None and measured[name][2] < MIN_LAYER_SQNR_DB}
    slow = {name: why for name, why in decided.items() if name not in lossy}
    notes.append(f'auto-exclude: layer SQNR < {MIN_LAYER_SQNR_DB:g} dB in {len(lossy)} '
                 f'layers, int8 kernel > {SLOWER_RATIO:g}x and +{SLOWER_MIN_MS:g} ms of the '
                 f'fp32 one in {len(slow)} (measured on the all-int8 candidate)')
    result = _AutoResult(candidate, compiled_candidate, compiled_fp32, None, measured, {}, {})
    if lossy:
        log(f'auto-exclude: {len(lossy)} lossy layers kept fp32; quantizing again')
        result.converted = quantize([*reasons, *lossy])
        result.compiled = _compiled_program(result.converted, example)
        result.compiled_candidate = compiled_candidate
        result.fp32.update(lossy)
    if not slow:
        return result
    log(f'auto-exclude: {len(slow)} layers slower in int8; quantizing again and timing the '
        'network with and without them int8')
    converted = quantize([*reasons, *lossy, *slow])
    compiled = _compiled_program(converted, example)
    with _Threads(threads):
        timed = measure_interleaved({'with': lambda: compiled(example),
                                     'without': lambda: result.compiled(example)},
                                    max(runs, 5), 3)
    with_ms, without_ms = timed['with'].median_ms, timed['without'].median_ms
    if with_ms < without_ms:
        notes.append(f'auto-exclude: the network with those {len(slow)} layers fp32 ran in '
                     f'{with_ms:.3f} ms, {without_ms:.3f} ms with them int8: kept fp32')
        result.converted, result.compiled = converted, compiled
        result.compiled_candidate = compiled_candidate
        result.fp32.update(slow)
    else:
        notes.append(f'auto-exclude: the network with those {len(slow)} layers fp32 ran in '
                     f'{with_ms:.3f} ms, {without_ms:.3f} ms with them int8 (the quantize/'
                     'dequantize kernels an fp32 layer adds are not in its kernel time): '
                     'kept int8')
        result.int8.update({name: f'{why}, but the network ran faster with it int8 '
                                  f'({without_ms:.3f} vs {with_ms:.3f} ms): kept int8'
                            for name, why in slow.items()})
    return result


def _compiled_program(converted: torch.fx.GraphModule, example: Tensor) -> Callable:
    """A converted graph, exported again (as it is saved) and compiled."""
    with torch.no_grad():
        return compile_torchao(torch.export.export(converted, (example, )).module())


@torch.no_grad()
def _output_agreement(wrapper, int8_module, calib_paths, spec, canvas) -> dict:
    reference, got = [], []
    count = 0
    for batch in _batches(calib_paths, spec, canvas, OUTPUT_IMAGES):
        reference += [t.numpy().ravel() for t in _flat(wrapper(batch))]
        got += [t.numpy().ravel() for t in _flat(int8_module(batch))]
        count += 1
    reference, got = np.concatenate(reference), np.concatenate(got)
    return dict(images=count, cosine=cosine(reference, got), sqnr_db=sqnr_db(reference, got),
                max_abs_diff=float(np.abs(reference - got).max()),
                max_abs_fp32=float(np.abs(reference).max()))


def _latency(compiled_fp32, compiled_int8, compiled_candidate, example, threads, runs
             ) -> dict:
    """fp32 vs int8 (and the all-int8 candidate of auto_exclude), timed interleaved."""
    fns = {'fp32': compiled_fp32, 'int8': compiled_int8}
    if compiled_candidate is not None:
        fns['int8_all'] = compiled_candidate
    with _Threads(threads):
        for fn in fns.values():  # compile outside the timed rounds
            fn(example)
        timed = measure_interleaved({name: (lambda fn=fn: fn(example))
                                     for name, fn in fns.items()}, runs, 3)
    fp32, int8 = timed['fp32'], timed['int8']
    result = dict(fp32_ms=fp32.median_ms, int8_ms=int8.median_ms,
                  ratio=int8.median_ms / fp32.median_ms,
                  speedup=fp32.median_ms / int8.median_ms, fp32_min_ms=fp32.min_ms,
                  int8_min_ms=int8.min_ms)
    if 'int8_all' in timed:
        result['int8_all_ms'] = timed['int8_all'].median_ms
    result.update(threads=threads, batch=1, input='x'.join(str(s) for s in example.shape),
                  runs=runs, compiled='inductor, freezing')
    return result


# ----------------------------------------------------------------------------- evaluation
def evaluate_torchao(config, pt2_path: str) -> Dict[str, float]:
    """The metrics of the config's ``test_evaluator`` on its test set for the int8 program.

    The model is built from ``config`` (no weights needed: the network is replaced) and its
    network swapped for the program of ``pt2_path`` (eager): ``extract_feat`` passes the
    preprocessed batch through, the head's ``forward`` runs the program image by image
    (padded to its input shape) and returns what the head's own forward would, so the head's
    ``predict`` (softmax / box decoding, NMS, rescaling: fp32, mmpretrain's and mmdet's) and
    the config's evaluator run unchanged, as in ``mim test``. The test dataloader runs
    without worker processes.
    """
    from mmengine.config import Config
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    module = load_torchao(pt2_path)
    meta = module.mmrepghost_meta
    if meta.get('format') != FORMAT:
        raise QuantizeError(f'{pt2_path} was not written by the torchao backend '
                            '(tools/quantize.py --backend torchao): it has no '
                            f'{META_FILE} description')
    cfg = Config.fromfile(config) if isinstance(config, str) else config.copy()
    if cfg.model.get('backbone') is not None:
        cfg.model.backbone.init_cfg = None
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner merges it
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = build_model(cfg).eval()
    _replace_network(model, module, meta)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    loader_cfg = cfg.test_dataloader.copy()
    loader_cfg.update(num_workers=0, persistent_workers=False)
    dataloader = Runner.build_dataloader(loader_cfg)
    dataset_classes = list(dataloader.dataset.metainfo.get('classes') or [])
    if meta.get('classes') and dataset_classes and dataset_classes != meta['classes']:
        raise QuantizeError(f"the config's test set has other classes than {pt2_path} "
                            f'({len(dataset_classes)} vs {len(meta["classes"])}); evaluate '
                            'it with the config it was quantized with')
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataloader.dataset.metainfo
    with torch.no_grad():
        for data_batch in dataloader:
            evaluator.process(data_samples=model.test_step(data_batch), data_batch=data_batch)
    return evaluator.evaluate(len(dataloader.dataset))


def _replace_network(model: nn.Module, program: nn.Module, meta: dict) -> None:
    canvas = tuple(meta['input_shape'][2:])
    names = meta['output_names']

    def run(images: Tensor) -> List[Tensor]:
        per_image = [_flat(program(_to_canvas(image[None], canvas, meta['pad_value'],
                                              'a test image')))
                     for image in images]
        return [torch.cat(outputs) for outputs in zip(*per_image)]

    if meta['is_detector']:
        head = getattr(model, 'bbox_head', None)
        if head is None or hasattr(model, 'roi_head'):
            raise QuantizeError(f'{type(model).__name__}: the int8 program holds a '
                                'single-stage detector network; the config builds another '
                                'kind of model')
        kinds = list(OrderedDict.fromkeys(name.rsplit('_', 1)[0] for name in names))

        def head_forward(images):
            outputs = run(images)
            return tuple([t for t, name in zip(outputs, names)
                          if name.rsplit('_', 1)[0] == kind] for kind in kinds)

        head.forward = head_forward
    elif hasattr(model, 'head') and hasattr(model, 'extract_feat'):
        model.head.forward = lambda images: run(images)[0]
    else:
        raise QuantizeError(f'{type(model).__name__}: evaluate_torchao supports mmpretrain '
                            'classifiers and single-stage mmdet detectors')
    model.extract_feat = lambda inputs, *args, **kwargs: inputs
