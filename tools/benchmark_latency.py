#!/usr/bin/env python
"""CPU latency of RepGhostNet (train structure vs deployed) and its peers, side by side.

    python tools/benchmark_latency.py [--out-dir work_dirs/benchmark] [--runs 30] [--quick]

Everything is measured in one run on this machine, so the ratios are the result; absolute
milliseconds depend on the CPU. Each case: median (min, max) of ``--runs`` timed calls after
warm-up, at 224x224, for 1 and all threads, batch 1 and 8, in PyTorch eager and onnxruntime.
The networks compared in one table are timed interleaved (one call of each, round-robin), so
drift of a shared machine does not favour whichever runs at a quiet moment:

* ``models``: RepGhostNet at every width, train structure and deployed; timm's GhostNet
  1.0x/1.3x, MobileNetV3-Large 0.75x/1.0x, MobileNetV2 1.0x and timm's own RepGhostNet 1.0x after
  ``timm.utils.reparameterize_model`` (the reference implementation), all without weights.
* ``table1``: the paper's Table 1 -- the 32 concatenations of GhostNet 1.0x's Ghost modules
  against additions of the same tensors, batch 1/2/8/32 (PyTorch eager).
* ``detectors``: RetinaNet-RepGhostNet 1.3x deployed vs RetinaNet-MobileNetV2 (mmdet's) up to
  the head outputs, at 320x320 and 800x1344 (1333 padded to 32), batch 1.
* ``layouts``: RepGhostNet 1.0x train structure and deployed in PyTorch eager, with NCHW and
  with channels-last weights (``model.to(memory_format=torch.channels_last)``; the input stays
  NCHW): oneDNN runs the deployed depthwise convs much faster channels-last, while the train
  structure's BatchNorms gain nothing from it.
* ``training``: one SGD step (forward, backward, update) of the RepGhostNet 1.0x classifier
  with the paper's BN re-parameterization branch and without it (``reparam_branches=()``),
  batch 8 (PyTorch, all threads): the price of the branches during training.

The ``models`` part also reports the achieved GFLOP/s of the deployed RepGhostNet 1.0x in
onnxruntime (1 thread) against one core's peak: FP32 lanes of the widest FMA (AVX-512: 16,
AVX2: 8) x 2 FMA pipes x 2 FLOPs x the clock /proc/cpuinfo reports.

Writes ``results.md`` (the tables), ``results.csv`` and ``latency_vs_accuracy.png`` (the paper's
Fig. 1 style: ImageNet top-1 from the paper and timm's model cards against the latency
measured here) into ``--out-dir``. ``--quick`` runs one small case of each kind (for CI).
"""
import argparse
import copy
import os
import os.path as osp
import sys
import tempfile

import torch
from torch.overrides import TorchFunctionMode

from mmrepghost.deploy import build_model, reparameterize_model
from mmrepghost.deploy.onnx import RawOutputs, export_onnx
from mmrepghost.models import ARCH_WIDTHS, repghostnet_classifier_cfg
from mmrepghost.utils import atomic_write
from mmrepghost.utils.reports import write_report
from mmrepghost.utils.timing import measure_interleaved

#: ImageNet top-1 (%): RepGhostNet from the paper's Table 3, the peers from timm's model cards
TOP1 = {
    'RepGhostNet 0.5x': 66.9, 'RepGhostNet 0.58x': 68.9, 'RepGhostNet 0.8x': 72.2,
    'RepGhostNet 1.0x': 74.2, 'RepGhostNet 1.11x': 75.1, 'RepGhostNet 1.3x': 76.4,
    'RepGhostNet 1.5x': 77.5, 'RepGhostNet 2.0x': 78.8,
    'GhostNet 1.0x': 73.9, 'GhostNet 1.3x': 75.7, 'MobileNetV3-L 0.75x': 73.3,
    'MobileNetV3-L 1.0x': 75.8, 'MobileNetV2 1.0x': 72.9, 'timm RepGhostNet 1.0x': 74.2,
}
PEERS = {
    'GhostNet 1.0x': 'ghostnet_100', 'GhostNet 1.3x': 'ghostnet_130',
    'MobileNetV3-L 0.75x': 'mobilenetv3_large_075', 'MobileNetV3-L 1.0x': 'mobilenetv3_large_100',
    'MobileNetV2 1.0x': 'mobilenetv2_100', 'timm RepGhostNet 1.0x': 'repghostnet_100',
}


PARTS = ('models', 'layouts', 'table1', 'detectors', 'training')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--runs', type=int, default=30, help='timed runs a case (>= 5)')
    parser.add_argument('--parts', nargs='+',
                        default=list(PARTS), choices=list(PARTS))
    parser.add_argument('--quick', action='store_true',
                        help='one small case of each part, 5 runs (for CI)')
    args = parser.parse_args(argv)
    if args.runs < 5:
        parser.error(f'--runs must be >= 5, got {args.runs}')
    if args.quick:
        args.runs = 5
    return args


def build_classifier(width, **backbone_options):
    """The official-head ImageNet classifier of ``width`` (mmpretrain ``ImageClassifier``)."""
    from mmengine.config import Config
    cfg = repghostnet_classifier_cfg(width)
    cfg['backbone'].update(backbone_options)
    return build_model(Config(dict(model=cfg)))


def build_classifiers(quick):
    """(name, structure, model) for every network of the ``models`` part."""
    import timm
    widths = ['1.0x'] if quick else list(ARCH_WIDTHS)
    for width in widths:
        model = build_classifier(width).eval()
        deployed = copy.deepcopy(model)
        reparameterize_model(deployed, logger='silent')
        yield f'RepGhostNet {width}', 'train', model
        yield f'RepGhostNet {width}', 'deployed', deployed
    peers = {'GhostNet 1.0x': PEERS['GhostNet 1.0x']} if quick else PEERS
    for name, timm_name in peers.items():
        model = timm.create_model(timm_name, pretrained=False).eval()
        if name.startswith('timm RepGhostNet'):
            model = timm.utils.reparameterize_model(model)
        yield name, 'deployed' if 'RepGhost' in name else '-', model


def onnx_session(model, path, shape, threads):
    import onnxruntime as ort
    export_onnx(model, path, shape, overwrite=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle worker threads sleep instead of spinning: with many sessions timed round-robin,
    # spinning pools of the idle sessions would steal the cores of the one being timed
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def time_models(models, shape, threads, runs, tmp_dir):
    """{(key, backend): Latency} for ``models`` ({key: model}) on one ``shape`` input.

    Per backend, the models are timed interleaved (one run of each, round-robin), so every
    ratio in a table compares measurements taken over the same minutes.
    """
    torch.set_num_threads(threads)
    x = torch.randn(*shape)
    wrappers = {key: RawOutputs(model).eval() for key, model in models.items()}
    with torch.no_grad():
        eager = measure_interleaved(
            {key: (lambda w=w: w(x)) for key, w in wrappers.items()}, runs)
    feed = {'images': x.numpy()}
    sessions = {key: onnx_session(model, osp.join(tmp_dir, f'model{i}.onnx'), shape, threads)
                for i, (key, model) in enumerate(models.items())}
    onnx = measure_interleaved(
        {key: (lambda s=s: s.run(None, feed)) for key, s in sessions.items()}, runs)
    return {**{(key, 'pytorch'): lat for key, lat in eager.items()},
            **{(key, 'onnxruntime'): lat for key, lat in onnx.items()}}


def run_models(args, thread_counts, rows, tmp_dir):
    batches = [1] if args.quick else [1, 8]
    models = {(name, structure): model
              for name, structure, model in build_classifiers(args.quick)}
    for threads in thread_counts:
        for batch in batches:
            timed = time_models(models, (batch, 3, 224, 224), threads, args.runs, tmp_dir)
            for ((name, structure), backend), lat in timed.items():
                rows.append(dict(part='models', model=name, structure=structure,
                                 backend=backend, threads=threads, batch=batch,
                                 input='224x224', median_ms=lat.median_ms,
                                 min_ms=lat.min_ms, max_ms=lat.max_ms))
                print(f'{name} [{structure}] {backend} threads={threads} batch={batch}: '
                      f'{lat.median_ms:.2f} ms', flush=True)


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
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    configs = {
        'RetinaNet-RepGhostNet 1.3x': osp.join(root, 'configs/retinanet/repghost_1_3x.py'),
        'RetinaNet-MobileNetV2': osp.join(root,
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
            timed = time_models(models, (1, 3, height, width), threads, args.runs, tmp_dir)
            for (name, backend), lat in timed.items():
                rows.append(dict(part='detectors', model=name, structure='deployed',
                                 backend=backend, threads=threads, batch=1,
                                 input=f'{height}x{width}', median_ms=lat.median_ms,
                                 min_ms=lat.min_ms, max_ms=lat.max_ms))
                print(f'{name} {backend} threads={threads} {height}x{width}: '
                      f'{lat.median_ms:.1f} ms', flush=True)


def run_training(args, thread_counts, rows):
    """A training step with vs without the BN re-parameterization branch."""
    from mmpretrain.structures import DataSample
    torch.set_num_threads(max(thread_counts))
    batch = 2 if args.quick else 8
    x = torch.randn(batch, 3, 224, 224)
    samples = [DataSample().set_gt_label(i % 1000) for i in range(batch)]
    steps = {}
    for branches in (('bn', ), ()):
        model = build_classifier('1.0x', reparam_branches=branches).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad()
            model(x, samples, mode='loss')['loss'].backward()
            optimizer.step()

        steps['with BN branch (paper)' if branches else 'no re-param branch'] = step
    for name, lat in measure_interleaved(steps, args.runs, warmup=3).items():
        rows.append(dict(part='training', model='RepGhostNet 1.0x step', structure=name,
                         backend='pytorch', threads=max(thread_counts), batch=batch,
                         input='224x224', median_ms=lat.median_ms, min_ms=lat.min_ms,
                         max_ms=lat.max_ms))
        print(f'training step {name}: {lat.median_ms:.1f} ms', flush=True)


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
        ort = dict(part='models', backend='onnxruntime', threads=1, batch=batch)
        ours = median_ms(rows, model='RepGhostNet 1.0x', structure='deployed', **ort)
        ratio(f'onnxruntime, 1 thread, batch {batch}: deployed RepGhostNet 1.0x / GhostNet 1.0x',
              ours, median_ms(rows, model='GhostNet 1.0x', **ort))
        ratio(f'onnxruntime, 1 thread, batch {batch}: ours / timm RepGhostNet 1.0x '
              '(reparameterized)', ours, median_ms(rows, model='timm RepGhostNet 1.0x', **ort))
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
    ratio('training step, with / without the BN re-parameterization branch',
          median_ms(rows, part='training', structure='with BN branch (paper)'),
          median_ms(rows, part='training', structure='no re-param branch'))
    return lines + efficiency_lines(rows)


def efficiency_lines(rows):
    """Achieved GFLOP/s of deployed RepGhostNet 1.0x (onnxruntime, 1 thread) vs the peak."""
    from mmrepghost.utils import count_params_macs
    timed = [r for r in rows if (r['part'], r['model'], r['structure'], r['backend'],
                                 r['threads']) == ('models', 'RepGhostNet 1.0x', 'deployed',
                                                   'onnxruntime', 1)]
    if not timed:
        return []
    macs = count_params_macs(build_classifier('1.0x'), torch.randn(1, 3, 224, 224))[1]
    peak, how = single_core_peak_gflops()
    lines = []
    for r in timed:
        achieved = 2 * macs * r['batch'] / (r['median_ms'] / 1e3) / 1e9
        share = f', {100 * achieved / peak:.0f}% of one core\'s peak {peak:.0f} GFLOP/s ' \
                f'({how})' if peak else f' (peak unknown: {how})'
        lines.append(f'Deployed RepGhostNet 1.0x, onnxruntime, 1 thread, batch '
                     f'{r["batch"]}: {achieved:.1f} GFLOP/s{share}.')
    return lines


def markdown(rows):
    lines = ['| part | model | structure | backend | threads | batch | input | median ms '
             '| min ms | max ms |', '|---|---|---|---|---:|---:|---|---:|---:|---:|']
    for r in rows:
        lines.append(f"| {r['part']} | {r['model']} | {r['structure']} | {r['backend']} | "
                     f"{r['threads']} | {r['batch']} | {r['input']} | {r['median_ms']:.3f} | "
                     f"{r['min_ms']:.3f} | {r['max_ms']:.3f} |")
    return '\n'.join(lines) + '\n'


def plot(rows, path):
    """Top-1 against onnxruntime 1-thread batch-1 latency of the deployed networks."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    points = {}
    for r in rows:
        if (r['part'] == 'models' and r['backend'] == 'onnxruntime' and r['threads'] == 1
                and r['batch'] == 1 and r['structure'] != 'train' and r['model'] in TOP1):
            points[r['model']] = (r['median_ms'], TOP1[r['model']])
    fig, ax = plt.subplots(figsize=(7, 5))
    families = {}
    for name, (ms, top1) in points.items():
        family = name.rsplit(' ', 1)[0]
        families.setdefault(family, []).append((ms, top1, name))
    for family, values in families.items():
        values.sort()
        ax.plot([v[0] for v in values], [v[1] for v in values], 'o-', label=family)
        for ms, top1, name in values:
            ax.annotate(name.rsplit(' ', 1)[1], (ms, top1), fontsize=7,
                        textcoords='offset points', xytext=(3, 3))
    ax.set_xlabel('latency (ms), onnxruntime, 1 thread, batch 1, 224x224 (this machine)')
    ax.set_ylabel('ImageNet top-1 (%) (paper / timm)')
    ax.grid(alpha=0.3)
    ax.legend()
    with atomic_write(path, overwrite=True) as tmp:
        fig.savefig(tmp, format='png', dpi=120, bbox_inches='tight')
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    thread_counts = [1] if args.quick else sorted({1, os.cpu_count() or 1})
    rows = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        if 'models' in args.parts:
            run_models(args, thread_counts, rows, tmp_dir)
        if 'layouts' in args.parts:
            run_layouts(args, thread_counts, rows)
        if 'table1' in args.parts:
            run_table1(args, thread_counts, rows)
        if 'detectors' in args.parts:
            run_detectors(args, thread_counts, rows, tmp_dir)
        if 'training' in args.parts:
            run_training(args, thread_counts, rows)
    table = markdown(rows)
    summary = summary_lines(rows)
    if summary:
        table += '\n' + '\n'.join(f'- {line}' for line in summary) + '\n'
    write_report(args.out_dir, 'results', table, rows)
    if 'models' in args.parts:
        plot(rows, osp.join(args.out_dir, 'latency_vs_accuracy.png'))
    print(table)
    print(f'wrote {args.out_dir}/results.md, results.csv' +
          (', latency_vs_accuracy.png' if 'models' in args.parts else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
