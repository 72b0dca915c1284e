#!/usr/bin/env python
"""INT8 benchmark: latency of int8 vs onnxruntime fp32, and accuracy on the tiny trained sets.

    python tools/benchmark_quantization.py [--parts speed accuracy] [--runs 20] [--quick]
        [--study-dir work_dirs/quant_study] [--out-dir work_dirs/benchmark_int8]

``speed`` (random weights; speed only): the deployed RepGhostNet 1.0x and MobileNetV2
classifiers at 224x224, and the RetinaNet backbone + FPN of RepGhostNet 1.0x and of
MobileNetV2 at 640x640, 1 thread, batch 1 and 8. Per network and batch, every variant is timed
interleaved in one loop (``mmrepghost.utils.timing.measure_interleaved``): onnxruntime fp32
(the reference), onnxruntime int8 with every layer quantized and with ``--auto-exclude``'s
decisions (measured at batch 1), OpenVINO fp32 and NNCF int8, and torchao int8 under
Inductor (the last two when their packages are installed). Calibration: 32 images of
N(0, 1) noise (scales, not speed, depend on them).

``accuracy``: the models trained by the tiny configs (``--study-dir``, see
docs/quantization.md for the commands): each end-to-end .onnx quantized with the config's
train split, then evaluated like ``mim test`` (``tools/deploy_test.py``'s evaluation) in fp32
and int8; classifiers also report top-1 agreement and logit cosine. Plus the weight
statistics of the fused depthwise convs (``mmrepghost.deploy.quantize.weight_stats``).

Writes ``results.md`` and ``results.csv`` in ``--out-dir``.
"""
import argparse
import os
import os.path as osp
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from mmrepghost.deploy import build_model, reparameterize_model  # noqa: E402
from mmrepghost.deploy.onnx import export_onnx  # noqa: E402
from mmrepghost.deploy.quantize import cosine  # noqa: E402
from mmrepghost.utils.reports import write_report  # noqa: E402
from mmrepghost.utils.timing import measure_interleaved  # noqa: E402

PARTS = ('speed', 'accuracy')
GOAL = 0.65  # int8 / onnxruntime fp32, at least one backend (issue: INT8 that pays)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--parts', nargs='+', choices=PARTS, default=list(PARTS))
    parser.add_argument('--runs', type=int, default=20, help='interleaved runs a case (>= 3)')
    parser.add_argument('--quick', action='store_true',
                        help='small inputs, batch 1, RepGhostNet only (a smoke run)')
    parser.add_argument('--study-dir', default='work_dirs/quant_study',
                        help='trained tiny models (see docs/quantization.md)')
    parser.add_argument('--out-dir', default='work_dirs/benchmark_int8')
    args = parser.parse_args(argv)
    if args.runs < 3:
        parser.error(f'--runs must be >= 3, got {args.runs}')
    return args


# -- networks --------------------------------------------------------------------------------
class BackboneNeck(nn.Module):
    """A detector's backbone + neck: ``images -> feature maps``."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.backbone, self.neck = detector.backbone, detector.neck

    def forward(self, images):
        return tuple(self.neck(self.backbone(images)))


def speed_networks(quick: bool):
    """(name, input size, deployed module) of the speed part."""
    from mmengine.config import Config
    from benchmark_latency import build_classifier
    classifier = build_classifier('1.0x').eval()
    reparameterize_model(classifier, logger='silent')
    size = 96 if quick else 224
    yield 'RepGhostNet 1.0x classifier', size, classifier
    if not quick:
        cfg = Config(dict(model=dict(
            type='ImageClassifier', backbone=dict(type='MobileNetV2', widen_factor=1.0),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=1280))))
        cfg.default_scope = 'mmpretrain'
        yield 'MobileNetV2 classifier', size, build_model(cfg).eval()
    full = Config.fromfile(osp.join(ROOT, 'configs/retinanet/repghost_1_3x.py'))
    detectors = {'RepGhostNet 1.0x': 'configs/retinanet/repghost_1_0x_tiny-coco.py'}
    if not quick:
        detectors['MobileNetV2'] = 'configs/retinanet/mobilenetv2_1_0x_tiny-coco.py'
    for name, config in detectors.items():
        cfg = Config.fromfile(osp.join(ROOT, config))
        cfg.model.backbone.init_cfg = None
        cfg.model.neck.out_channels = full.model.neck.out_channels  # the 256-channel FPN
        cfg.model.bbox_head = full.model.bbox_head
        detector = build_model(cfg).eval()
        reparameterize_model(detector, logger='silent')
        yield f'RetinaNet-{name} backbone+FPN', 128 if quick else 640, BackboneNeck(detector)


# -- backends --------------------------------------------------------------------------------
def ort_variants(path, batches, calib, probe, runs, report_path):
    """{variant: onnxruntime session} for fp32, int8 (all layers) and int8 (--auto-exclude),
    and the auto-exclude decisions, whose per-layer table is written to ``report_path``."""
    import onnx

    from mmrepghost.deploy.quantize import QuantizeReport
    from mmrepghost.deploy.quantize.onnxruntime_backend import (_session, layer_records,
                                                                quantize_model)
    model = onnx.load(path)
    name = model.graph.input[0].name
    sessions = {'onnxruntime fp32': _session(model, 1)}
    every = quantize_model(model, name, calib, probe, log=lambda *_: None)
    sessions['onnxruntime int8'] = _session(every.model, 1)
    auto = quantize_model(model, name, calib, probe, auto_exclude=True, runs=runs,
                          log=lambda *_: None)
    sessions['onnxruntime int8 auto-exclude'] = _session(auto.model, 1)
    decided = dict(layers=len(auto.weighted), fp32=len(auto.fp32))
    report = QuantizeReport('onnxruntime', path, '(in memory)', '', layers=layer_records(auto),
                            notes=['whole-model ms of the plans tried: ' + ', '.join(
                                f'{label} {ms:.2f}' for label, ms in sorted(
                                    auto.plan_ms.items(), key=lambda item: item[1]))])
    with open(report_path, 'w') as f:
        f.write(report.markdown())
    return name, sessions, decided


def openvino_variants(path, calib):
    """{variant: callable(feed)} for OpenVINO fp32 and NNCF int8, or {} (with the reason)."""
    import onnx

    from mmrepghost.deploy.quantize.openvino_backend import quantize_graph_nncf
    from mmrepghost_runtime.backends import open_session
    with tempfile.TemporaryDirectory() as tmp:
        int8_path = osp.join(tmp, 'int8.onnx')
        try:
            onnx.save(quantize_graph_nncf(onnx.load(path), calib), int8_path)
            fp32 = open_session(path, 'openvino', threads=1)
        except ImportError as e:
            return {}, f'OpenVINO/NNCF skipped: {e}'
        int8 = open_session(int8_path, 'openvino', threads=1)
    return {'openvino fp32': fp32.run, 'openvino int8 (NNCF)': int8.run}, ''


def torchao_variants(module, calib, shape):
    """{variant: callable(x)} for torch.compile fp32 and torchao int8 (Inductor, freezing) at
    the static ``shape``, or {} (with the reason)."""
    from mmrepghost.deploy.onnx import RawOutputs
    from mmrepghost.deploy.quantize.torchao_backend import compile_torchao, quantize_module
    batch = shape[0]
    images = [torch.from_numpy(x) for x in calib]
    batches = [torch.cat(images[i:i + batch]) for i in range(0, len(images) - batch + 1, batch)]
    try:
        int8 = quantize_module(module, batches, batches[0])
        fp32 = compile_torchao(RawOutputs(module).eval())
    except ImportError as e:
        return {}, f'torchao skipped: {e}'
    except Exception as e:  # a failure inside torchao's quantizer: recorded, not fatal
        return {}, f'torchao failed at batch {batch}: {type(e).__name__}: {e}'
    return {'torch.compile fp32': fp32, 'torchao int8 (Inductor)': compile_torchao(int8)}, ''


def run_speed(args, rows, notes, tmp_dir):
    torch.set_num_threads(1)
    batches = [1] if args.quick else [1, 8]
    rng = np.random.default_rng(0)
    for index, (name, size, module) in enumerate(speed_networks(args.quick)):
        path = osp.join(tmp_dir, f'net{index}.onnx')
        export_onnx(module, path, (1, 3, size, size), overwrite=True)
        calib = [rng.standard_normal((1, 3, size, size)).astype(np.float32)
                 for _ in range(8 if args.quick else 32)]
        start = time.perf_counter()
        report = osp.join(args.out_dir, 'auto_exclude_' + name.replace(' ', '_').replace(
            '+', '_').lower() + '.md')
        input_name, sessions, decided = ort_variants(path, batches, calib, calib[:2],
                                                     args.runs, report)
        notes.append(f'{name}: --auto-exclude kept {decided["fp32"]} of {decided["layers"]} '
                     f'layers fp32 (decided at batch 1, {time.perf_counter() - start:.0f} s '
                     f'for both quantizations; per-layer table: {osp.basename(report)})')
        extra, why = ({}, '') if args.quick else openvino_variants(path, calib)
        if why:
            notes.append(why)
        for batch in batches:
            x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
            feed = {input_name: x}
            fns = {key: (lambda s=s: s.run(None, feed)) for key, s in sessions.items()}
            fns.update({key: (lambda run=run: run(x)) for key, run in extra.items()})
            if not args.quick:
                compiled, why = torchao_variants(module, calib, x.shape)
                if why:
                    notes.append(f'{name}: {why}')
                tx = torch.from_numpy(x)
                fns.update({key: (lambda fn=fn: fn(tx)) for key, fn in compiled.items()})
            timed = measure_interleaved(fns, args.runs, warmup=3)
            reference = timed['onnxruntime fp32'].median_ms
            for variant, lat in timed.items():
                rows.append(dict(part='speed', network=name, input=f'{size}x{size}',
                                 batch=batch, threads=1, variant=variant,
                                 median_ms=lat.median_ms, ratio=lat.median_ms / reference))
                print(f'{name} b{batch} {variant}: {lat.median_ms:.2f} ms '
                      f'({lat.median_ms / reference:.2f}x)', flush=True)


# -- accuracy --------------------------------------------------------------------------------
STUDY = {  # name: (config, folder in --study-dir with end2end.onnx and the train checkpoint)
    'RepGhostNet 1.0x classifier': ('configs/cls/repghost_1_0x_tiny-imagenet.py',
                                    'cls_repghost/epoch_30.pth'),
    'MobileNetV2 classifier': ('configs/cls/mobilenetv2_1_0x_tiny-imagenet.py',
                               'cls_mobilenetv2/epoch_30.pth'),
    'RetinaNet-RepGhostNet 1.0x': ('configs/retinanet/repghost_1_0x_tiny-coco.py',
                                   'retinanet_repghost/epoch_8.pth'),
    'RetinaNet-MobileNetV2': ('configs/retinanet/mobilenetv2_1_0x_tiny-coco.py',
                              'retinanet_mobilenetv2/epoch_8.pth'),
}


def classifier_agreement(fp32_path, int8_path, cfg):
    """Top-1 agreement (%) and mean logit cosine of two classifier files on the test split."""
    from mmengine.registry import DATASETS, init_default_scope

    from mmrepghost_runtime import load_model, read_image
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    images = [read_image(dataset.get_data_info(i)['img_path'])[0] for i in range(len(dataset))]
    a, b = (load_model(p).predict(images) for p in (fp32_path, int8_path))
    agree = np.mean([x.label == y.label for x, y in zip(a, b)]) * 100
    cos = np.mean([cosine(np.log(x.scores + 1e-12), np.log(y.scores + 1e-12))
                   for x, y in zip(a, b)])
    return float(agree), float(cos)


def run_accuracy(args, rows, notes):
    from mmengine.config import Config

    from mmrepghost.deploy.backend_eval import evaluate_deployed
    from mmrepghost.deploy.quantize import quantize
    for name, (config, checkpoint) in STUDY.items():
        folder = osp.dirname(checkpoint)
        work = osp.join(args.study_dir, folder)
        fp32 = osp.join(work, 'end2end.onnx')
        if not osp.isfile(fp32):
            notes.append(f'{name}: no {fp32} (train and export it first, see '
                         'docs/quantization.md); skipped')
            continue
        cfg = Config.fromfile(osp.join(ROOT, config))
        key = 'accuracy/top1' if 'classifier' in name else 'coco/bbox_mAP'
        variants = {'fp32': (fp32, None)}
        for label, auto in (('onnxruntime int8', False), ('onnxruntime int8 auto-exclude', True)):
            out = osp.join(args.out_dir, f'{folder}_{"auto" if auto else "all"}.onnx')
            report = quantize('onnxruntime', osp.join(ROOT, config), fp32, out,
                              calib_images=64 if args.quick else 200, auto_exclude=auto,
                              runs=args.runs, overwrite=True, log=lambda *_: None)
            variants[label] = (out, report)
        out = osp.join(args.out_dir, f'{folder}_openvino.onnx')
        variants['openvino int8 (NNCF)'] = (out, quantize(
            'openvino', osp.join(ROOT, config), fp32, out, calib_images=64 if args.quick else 200,
            runs=args.runs, overwrite=True, log=lambda *_: None))
        deploy = osp.join(work, 'model_deploy.pth')  # RepGhostNet: the torchao backend's input
        if osp.isfile(deploy):
            out = osp.join(args.out_dir, f'{folder}_torchao.pt2')
            try:
                variants['torchao int8 (eager)'] = (out, quantize(
                    'torchao', osp.join(ROOT, config), deploy, out, calib_images=64 if
                    args.quick else 200, runs=0, overwrite=True, log=lambda *_: None))
            except Exception as e:  # recorded, not fatal
                notes.append(f'{name}: torchao failed: {type(e).__name__}: {e}')
        for label, (path, report) in variants.items():
            if path.endswith('.pt2'):
                from mmrepghost.deploy.quantize.torchao_backend import evaluate_torchao
                metrics = evaluate_torchao(cfg, path)
            else:
                metrics = evaluate_deployed(cfg, path, 'openvino' if 'openvino' in label
                                            else 'onnxruntime')
            row = dict(part='accuracy', network=name, variant=label, metric=key,
                       value=float(metrics[key]))
            if report is not None:
                row.update(ratio=report.latency.get('ratio'), fp32_layers=len(report.excluded),
                           output_sqnr_db=report.outputs.get('sqnr_db'))
                if 'classifier' in name and not path.endswith('.pt2'):
                    row['top1_agreement'], row['logit_cosine'] = classifier_agreement(
                        fp32, path, cfg)
            rows.append(row)
            print(f'{name} {label}: {key} {row["value"]:.4f}', flush=True)
    notes.extend(weight_statistics(args.study_dir))


def weight_statistics(study_dir):
    """Per trained model: a summary line, then the table of its depthwise convs' tap ratios
    (:func:`mmrepghost.deploy.quantize.weight_stats.depthwise_tap_ratios`)."""
    from mmrepghost.deploy import load_trained_model
    from mmrepghost.deploy.quantize.weight_stats import depthwise_tap_ratios, format_table
    summaries, tables = [], []
    for name, (config, checkpoint) in STUDY.items():
        path = osp.join(study_dir, checkpoint)
        if not osp.isfile(path):
            continue
        rows = depthwise_tap_ratios(load_trained_model(osp.join(ROOT, config), path).model)
        worst = [max(r.ratio_max_before for r in rows), max(r.ratio_max_after for r in rows)]
        median = [float(np.median([getattr(r, f'ratio_median_{when}') for r in rows]))
                  for when in ('before', 'after')]
        summaries.append(
            f'{name} ({len(rows)} depthwise convs, {sum(r.merged for r in rows)} changed by '
            f'fusion): largest tap / mean of the others, worst channel {worst[0]:.1f} before '
            f'fusion -> {worst[1]:.1f} after, median layer {median[0]:.2f} -> {median[1]:.2f}')
        tables.append(f'### {name}: depthwise kernels before / after fusion\n\n'
                      + format_table(rows))
    return summaries + tables


# -- report ----------------------------------------------------------------------------------
def markdown(rows, notes, args) -> str:
    lines = ['# INT8 benchmark', '',
             f'`python tools/benchmark_quantization.py --parts {" ".join(args.parts)} '
             f'--runs {args.runs}{" --quick" if args.quick else ""}` on '
             f'{time.strftime("%Y-%m-%d")}, {os.cpu_count()} cores, 1 thread.', '']
    speed = [r for r in rows if r['part'] == 'speed']
    if speed:
        lines += ['## Latency (median ms; ratio to onnxruntime fp32 of the same run)', '',
                  '| network | input | batch | variant | ms | x fp32 |',
                  '|---|---|---:|---|---:|---:|']
        lines += [f"| {r['network']} | {r['input']} | {r['batch']} | {r['variant']} | "
                  f"{r['median_ms']:.2f} | {r['ratio']:.2f} |" for r in speed]
        lines += ['', f'Goal: int8 <= {GOAL}x of onnxruntime fp32 on at least one backend:']
        for network in dict.fromkeys(r['network'] for r in speed):
            for batch in sorted({r['batch'] for r in speed if r['network'] == network}):
                int8 = [r for r in speed if r['network'] == network and r['batch'] == batch
                        and 'int8' in r['variant']]
                best = min(int8, key=lambda r: r['ratio'])
                verdict = 'met' if best['ratio'] <= GOAL else 'MISSED'
                lines.append(f"- {network}, batch {batch}: best {best['variant']} "
                             f"{best['ratio']:.2f}x -> {verdict}")
        lines.append('')
    accuracy = [r for r in rows if r['part'] == 'accuracy']
    if accuracy:
        lines += ['## Accuracy on the tiny sets (the evaluator of `mim test`)', '',
                  '| network | variant | metric | value | drop | layers fp32 | output SQNR dB | '
                  'top-1 agreement | logit cosine | latency x fp32 |',
                  '|---|---|---|---:|---:|---:|---:|---:|---:|---:|']
        reference = {r['network']: r['value'] for r in accuracy if r['variant'] == 'fp32'}
        for r in accuracy:
            drop = reference[r['network']] - r['value']
            lines.append(
                f"| {r['network']} | {r['variant']} | {r['metric']} | {r['value']:.4f} | "
                f"{drop:.4f} | {r.get('fp32_layers', '-')} | "
                + ' | '.join(f'{r[k]:.3f}' if r.get(k) is not None else '-' for k in (
                    'output_sqnr_db', 'top1_agreement', 'logit_cosine', 'ratio')) + ' |')
        lines.append('')
    lines += [f'- {note}' if not note.startswith('#') else f'\n{note}' for note in notes]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        if 'speed' in args.parts:
            run_speed(args, rows, notes, tmp)
        if 'accuracy' in args.parts:
            run_accuracy(args, rows, notes)
    text = markdown(rows, notes, args)
    write_report(args.out_dir, 'results', text, rows)
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
