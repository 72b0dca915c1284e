import argparse
import os
import subprocess
import sys

import pytest
import timm
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from mmrepghost.models import ARCH_WIDTHS, RepGhostNet, repghostnet_classifier_cfg
from tests.conftest import REPO_ROOT, TIMM_NAMES, load_tool, randomize_bn_

convert_weights = load_tool('convert_weights')
MODEL_CFG = os.path.join(REPO_ROOT, 'configs/_base_/models/repghostnet_1.0x.py')


def build_classifier(arch: str):
    return MODELS.build(repghostnet_classifier_cfg(arch))


def test_config_file_is_the_library_classifier():
    assert Config.fromfile(MODEL_CFG).model.to_dict() == repghostnet_classifier_cfg('1.0x')


def timm_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return randomize_bn_(timm.create_model(TIMM_NAMES[arch], pretrained=False), seed).eval()


def official_checkpoint(model) -> dict:
    """The container the official training script (timm's train.py under DDP) writes."""
    ema = {'module.' + k: v for k, v in model.state_dict().items()}
    noisy = {k: v + 1 if v.is_floating_point() else v for k, v in ema.items()}
    return dict(epoch=299, arch='repghostnet', state_dict=noisy, state_dict_ema=ema,
                args=argparse.Namespace(model='repghost.repghostnet_1_0x', lr=0.6))


def logits_after_conversion(tmp_path, arch, source, checkpoint, extra=()):
    src, dst = tmp_path / f'{source}.pth', tmp_path / f'{source}_mm.pth'
    torch.save(checkpoint, src)
    assert convert_weights.main([str(src), str(dst), '--from', source, *extra]) == 0
    ours = build_classifier(arch).eval()
    ours.load_state_dict(torch.load(dst)['state_dict'], strict=True)
    return ours


@pytest.mark.parametrize('arch', list(ARCH_WIDTHS))
def test_timm_weights_give_identical_logits(tmp_path, arch):
    ref = timm_model(arch)
    ours = logits_after_conversion(tmp_path, arch, 'timm', ref.state_dict())
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert (ref(x) - ours(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize('arch', ['0.5x', '1.0x', '2.0x'])
def test_official_layout_gives_identical_logits_from_ema(tmp_path, arch):
    ref = timm_model(arch, seed=1)
    ours = logits_after_conversion(tmp_path, arch, 'official', official_checkpoint(ref))
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        assert (ref(x) - ours(x)).abs().max().item() <= 1e-4


def test_backbone_layout_loads_into_backbone_and_detector_prefix(tmp_path):
    ref = timm_model('1.3x')
    src, dst = tmp_path / 'timm.pth', tmp_path / 'backbone.pth'
    torch.save(ref.state_dict(), src)
    assert convert_weights.main([str(src), str(dst), '--from', 'timm',
                                 '--layout', 'backbone']) == 0
    backbone = RepGhostNet('1.3x').eval()
    backbone.load_state_dict(torch.load(dst)['state_dict'], strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[0], ref.forward_features(x))


def test_pretrained_init_cfg_with_backbone_prefix(tmp_path):
    ref = timm_model('0.5x')
    src, dst = tmp_path / 'timm.pth', tmp_path / 'cls.pth'
    torch.save(ref.state_dict(), src)
    assert convert_weights.main([str(src), str(dst), '--from', 'timm']) == 0
    backbone = RepGhostNet('0.5x', out_indices=(0, 1, 2, 3), init_cfg=dict(
        type='Pretrained', checkpoint=str(dst), prefix='backbone.'))
    backbone.init_weights()
    torch.testing.assert_close(backbone.conv_stem.weight, ref.conv_stem.weight)
    torch.testing.assert_close(backbone.blocks[7][0].ghost2.fusion_bn[0].running_var,
                               ref.blocks[7][0].ghost2.fusion_bn[0].running_var)


def test_other_architecture_is_refused_with_key_lists(tmp_path, capsys):
    other = timm.create_model('ghostnet_100', pretrained=False)
    src, dst = tmp_path / 'ghost.pth', tmp_path / 'out.pth'
    torch.save(other.state_dict(), src)
    assert convert_weights.main([str(src), str(dst), '--from', 'timm']) == 2
    err = capsys.readouterr().err
    assert 'no RepGhostNet width fits this checkpoint' in err
    # GhostNet shares RepGhostNet's names but lacks the fusion BNs and has other widths
    assert 'missing keys:\n    backbone.blocks.0.0.ghost1.fusion_bn.0.weight' in err
    assert 'shape mismatches:' in err
    assert not dst.exists()


def test_unknown_keys_are_listed(tmp_path, capsys):
    state = timm_model('0.5x').state_dict()
    state['extra_head.weight'] = torch.zeros(3)
    src, dst = tmp_path / 'a.pth', tmp_path / 'b.pth'
    torch.save(state, src)
    assert convert_weights.main([str(src), str(dst), '--from', 'timm']) == 2
    err = capsys.readouterr().err
    assert '1 unknown, 0 missing, 0 misshapen' in err
    assert 'unknown keys:\n    extra_head.weight' in err


def test_wrong_width_is_refused_with_shapes(tmp_path, capsys):
    src, dst = tmp_path / 'a.pth', tmp_path / 'b.pth'
    torch.save(timm_model('0.5x').state_dict(), src)
    assert convert_weights.main([str(src), str(dst), '--from', 'timm', '--arch', '1.0x']) == 2
    assert 'shape mismatches' in capsys.readouterr().err


def test_never_overwrites_src_or_existing_dst(tmp_path, capsys):
    src, dst = tmp_path / 'a.pth', tmp_path / 'b.pth'
    torch.save(timm_model('0.5x').state_dict(), src)
    src_bytes = src.read_bytes()
    assert convert_weights.main([str(src), str(src), '--from', 'timm', '--force']) == 2
    assert 'is SRC' in capsys.readouterr().err
    dst.write_bytes(b'old')
    assert convert_weights.main([str(src), str(dst), '--from', 'timm']) == 2
    assert '--force' in capsys.readouterr().err and dst.read_bytes() == b'old'
    assert convert_weights.main([str(src), str(dst), '--from', 'timm', '--force']) == 0
    assert src.read_bytes() == src_bytes and dst.read_bytes() != b'old'


def test_cli_runs_as_a_script(tmp_path):
    src, dst = tmp_path / 'a.pth', tmp_path / 'b.pth'
    torch.save(timm_model('0.5x').state_dict(), src)
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'tools/convert_weights.py'),
                             str(src), str(dst), '--from', 'timm'],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert 'RepGhostNet 0.5x, classifier layout' in result.stdout
