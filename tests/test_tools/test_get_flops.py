import subprocess
import sys

import pytest
import torch
from mmpretrain.registry import MODELS

from mmrepghost.models import repghostnet_classifier_cfg
from mmrepghost.utils.complexity import count_params_macs
from tests.conftest import REPO_ROOT, load_tool

# Table 3 of the paper (params M, FLOPs M, as printed) and timm's model cards (precise)
PAPER = {'0.5x': (2.3, 43), '0.58x': (2.5, 60), '0.8x': (3.3, 96), '1.0x': (4.1, 142),
         '1.11x': (4.5, 170), '1.3x': (5.5, 231), '1.5x': (6.6, 301), '2.0x': (9.8, 516)}
PRECISE = {'1.0x': (4.074, 142.4), '1.3x': (5.479, 231.1), '2.0x': (9.796, 515.9)}


def within_rounding(value: float, printed: float, decimals: int) -> bool:
    """``value`` rounds to ``printed`` (half a unit of the last digit), or is within 0.5%."""
    return abs(value - printed) <= max(0.5 * 10**-decimals, 0.005 * printed) + 1e-9


@pytest.mark.parametrize('arch', list(PAPER))
def test_params_and_flops_match_table3(arch):
    model = MODELS.build(repghostnet_classifier_cfg(arch))
    params, macs = count_params_macs(model, torch.randn(1, 3, 224, 224))
    paper_params, paper_flops = PAPER[arch]
    assert within_rounding(params / 1e6, paper_params, 1), params
    assert within_rounding(macs / 1e6, paper_flops, 0), macs
    if arch in PRECISE:
        assert params / 1e6 == pytest.approx(PRECISE[arch][0], rel=0.005)
        assert macs / 1e6 == pytest.approx(PRECISE[arch][1], rel=0.005)


def test_counter_counts_all_params_and_conv_fc_macs():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, groups=1),
                              torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 8, 3, groups=8),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10))
    params, macs = count_params_macs(net, torch.randn(1, 3, 8, 8))
    assert params == (3 * 8 * 9 + 8) + 2 * 8 + (8 * 9 + 8) + (288 * 10 + 10)  # BN affine too
    assert macs == 8 * 64 * 27 + 8 * 36 * 9 + 10 * 288


def test_tool_prints_train_and_deploy_rows(capsys):
    assert load_tool('get_flops').main(['--arch', '1.0x', '--verify']) == 0
    out = capsys.readouterr().out
    train = next(line for line in out.splitlines() if '| RepGhostNet 1.0x | train |' in line)
    deploy = next(line for line in out.splitlines() if '| RepGhostNet 1.0x | deploy |' in line)
    assert float(train.split('|')[4]) == pytest.approx(142.4, rel=0.005)
    # deploy: same MACs; BN parameters gone, conv biases added
    assert float(deploy.split('|')[4]) == float(train.split('|')[4])
    assert float(deploy.split('|')[3]) < float(train.split('|')[3])
    assert float(deploy.split('|')[5]) < 1e-3


def test_tool_rejects_unknown_width():
    result = subprocess.run([sys.executable, f'{REPO_ROOT}/tools/get_flops.py', '--arch', '3x'],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "unknown --arch ['3x']; allowed: all, 0.5x" in result.stderr


def test_tool_counts_a_config(capsys):
    cfg = f'{REPO_ROOT}/configs/_base_/models/repghostnet_1.0x.py'
    assert load_tool('get_flops').main(['--config', cfg]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if 'repghostnet_1.0x' in line]
    assert [r.split('|')[2].strip() for r in rows] == ['train', 'deploy']
    assert float(rows[0].split('|')[3]) == pytest.approx(4.074, rel=0.005)
