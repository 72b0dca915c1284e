"""Numerics of deployment: eps-dominated BN statistics, and half-precision deployed networks."""
import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmrepghost.models import RepGhostNet
from tests.conftest import calibrate_bn_, randomize_bn_, relative_diff


@torch.no_grad()
def starve_bn_variance_(model, variance, every=12):
    """Every ``every``-th BN gets ``running_var = variance``, far below eps = 1e-5, so its
    fold scales by gamma / sqrt(eps) ~ 300 and eps alone sets the scale (as for a channel
    that is constant over the training data). Sparse enough that the train structure's
    activations stay finite: each starved BN multiplies them by ~300."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for bn in bns[::every]:
        bn.running_var.fill_(variance)
    return len(bns[::every])


@pytest.mark.parametrize('variance', [0.0, 1e-12, 1e-7])
def test_eps_dominated_bn_variance_deploys_within_tolerance(variance):
    model = randomize_bn_(RepGhostNet(arch='1.0x', out_indices=(2, 3, 4)))
    assert starve_bn_variance_(model, variance) >= 8
    model.eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = model(x)
        model.switch_to_deploy()
        deployed = model(x)
    for e, d in zip(expected, deployed):
        assert torch.isfinite(e).all() and torch.isfinite(d).all()
        assert e.abs().max() > 1e6  # the starved BNs dominate the scale
        assert relative_diff(e, d) < 1e-5


def test_fusion_arithmetic_is_float64_whatever_the_model_dtype():
    """A float16 model is folded in float64 and cast once: its fused weights equal, bit for
    bit, the float64 fold of the same float16 weights rounded to float16 (folding in float16
    itself would round every intermediate of gamma / sqrt(var + eps) and beta - mean * scale)."""
    model = randomize_bn_(RepGhostNet(arch='0.5x', out_indices=(4, )))
    starve_bn_variance_(model, 1e-9)
    half = model.half().eval()
    reference = copy.deepcopy(half).double()
    reference.switch_to_deploy()
    half.switch_to_deploy()
    for (name, w16), w64 in zip(half.state_dict().items(), reference.state_dict().values()):
        assert w16.dtype == torch.float16, name
        assert torch.equal(w16, w64.half()), name


def relative_l2(reference, other):
    return ((reference - other.float()).norm() / reference.norm()).item()


@pytest.mark.parametrize('dtype,tolerance', [(torch.float16, 3e-2), (torch.bfloat16, 0.2)])
def test_half_precision_deployed_outputs_stay_close_to_float32(dtype, tolerance):
    """Deployed RepGhostNet 1.0x (BN statistics calibrated as after training) run in
    float16/bfloat16 on CPU stays within ``tolerance`` (relative L2) of float32 at stages 2-4,
    and never further from it than the train structure in the same precision: folding costs
    no precision (it removes roundings). Measured: float16 0.4%/1.0%/1.5%, bfloat16
    3%/7%/10% (8 significant bits; random weights amplify rounding more than trained ones)."""
    model = calibrate_bn_(randomize_bn_(RepGhostNet(arch='1.0x', out_indices=(2, 3, 4))),
                          input_shape=(8, 3, 96, 96))
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        reference = model(x)
        train_errors = [relative_l2(r, o)
                        for r, o in zip(reference, copy.deepcopy(model).to(dtype)(x.to(dtype)))]
        model.switch_to_deploy()
        deployed = copy.deepcopy(model).to(dtype)(x.to(dtype))
    for full, reduced, train_error in zip(reference, deployed, train_errors):
        assert reduced.dtype == dtype and torch.isfinite(reduced).all()
        error = relative_l2(full, reduced)
        assert error < tolerance
        assert error <= train_error * 1.05, (error, train_error)
