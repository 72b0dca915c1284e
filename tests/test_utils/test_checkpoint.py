"""Safe loading of OpenMMLab checkpoints with torch's weights_only=True, and atomic saving."""
import argparse
import os
import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from torch import nn
from torch.utils.data import Dataset

import mmrepghost  # noqa: F401  (installs the allowlist)
from mmrepghost.utils import (SAFE_GLOBALS, CheckpointError, UnsafeCheckpointError, atomic_write,
                              load_checkpoint_file, save_checkpoint_atomic)


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.lin(inputs).squeeze(-1)
        return dict(loss=((out - labels)**2).mean()) if mode == 'loss' else out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([i / 8, 1.0]), labels=torch.tensor(float(i)))


def make_runner(work_dir, **kwargs):
    return Runner(
        model=ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=ToyData(), batch_size=4, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True),
                              collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='EMAHook')], randomness=dict(seed=0),
        default_scope='mmengine', **kwargs)


def clone_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A real Runner checkpoint per epoch, and the weights it saved last."""
    work_dir = tmp_path_factory.mktemp('runner')
    runner = make_runner(work_dir)
    runner.train()
    ema_hook = next(h for h in runner.hooks if type(h).__name__ == 'EMAHook')
    # EMAHook saves the averaged weights as state_dict and the raw ones as ema_state_dict
    return SimpleNamespace(work_dir=work_dir, ema=clone_state(ema_hook.ema_model.module),
                           raw=clone_state(runner.model))


def test_runner_checkpoint_loads_with_weights_only(trained):
    path = str(trained.work_dir / 'epoch_2.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    model = ToyModel()
    assert not torch.allclose(model.lin.weight, trained.ema['lin.weight'])
    load_checkpoint(model, path)  # mmengine -> torch.load(path), weights_only=True by default
    for key, value in model.state_dict().items():
        assert torch.allclose(value, trained.ema[key]), key

    ckpt = load_checkpoint_file(path)
    for key, value in trained.raw.items():
        assert torch.allclose(ckpt['ema_state_dict'][f'module.{key}'], value), key
    # the types the allowlist exists for really are in the file
    loss = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and loss.statistics('mean') == loss.mean()
    assert loss._log_history.dtype == np.float64 and loss._count_history.dtype == np.int64


def test_runner_resumes_from_checkpoint(trained, tmp_path):
    runner = make_runner(tmp_path, resume=True, load_from=str(trained.work_dir / 'epoch_1.pth'))
    runner.train()  # restores epoch 1 / iter 2, then runs epoch 2 only
    assert runner.epoch == 2 and runner.iter == 4
    assert not (tmp_path / 'epoch_1.pth').exists()  # epoch 1 was not trained again
    assert load_checkpoint_file(str(tmp_path / 'epoch_2.pth'))['meta']['iter'] == 4


def test_safe_globals_are_exactly_the_needed_types():
    names = sorted(g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
                   for g in SAFE_GLOBALS)
    dtypes = [f'numpy.dtypes.{t}DType' for t in (
        'Bool', 'Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16', 'UInt32', 'UInt64',
        'Float16', 'Float32', 'Float64')]
    rebuild = [f'numpy.{core}.multiarray.{fn}' for core in ('core', '_core')
               for fn in ('_reconstruct', 'scalar')]
    assert names == sorted([
        'builtins.getattr', 'mmengine.logging.history_buffer.HistoryBuffer', 'numpy.dtype',
        'numpy.ndarray', *dtypes, *rebuild
    ])
    # the one 'builtins.getattr' entry is the restricted stand-in, never getattr itself
    assert all(g is not getattr and g is not eval for g in SAFE_GLOBALS)
    assert not any(isinstance(g, tuple) and g[0] is getattr for g in SAFE_GLOBALS)


class Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


@pytest.mark.parametrize('zip_format', [True, False])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, zip_format):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Payload(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError, match=r'evil\.pth.*posix\.system') as info:
        load_checkpoint_file(str(path))
    message = str(info.value)
    assert 'system' in message and 'Nothing in the file was executed' in message
    assert 'Re-save' in message and 'weights_only=False' not in message
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(ToyModel(), str(path))
    assert not marker.exists()


def test_every_refused_global_is_named(tmp_path):
    path = tmp_path / 'two.pth'
    torch.save({'a': Payload(tmp_path / 'pwned'), 'b': eval}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(str(path))
    assert 'posix.system' in str(info.value) and 'builtins.eval' in str(info.value)


class GetattrPayload:
    """Abuses the allowlisted getattr to reach something other than a statistics method."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': GetattrPayload()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"getattr\(.*HistoryBuffer.*'__init__'\)"):
        load_checkpoint_file(str(path))


def test_unlisted_numpy_dtype_is_refused(tmp_path):
    path = tmp_path / 'strings.pth'
    torch.save({'names': np.array(['a', 'b'])}, path)
    with pytest.raises(UnsafeCheckpointError, match='StrDType'):
        load_checkpoint_file(str(path))


def test_extra_safe_globals_apply_to_one_load_only(tmp_path):
    path = tmp_path / 'timm.pth'
    torch.save({'args': argparse.Namespace(lr=0.1), 'x': np.ones(2)}, path)
    with pytest.raises(UnsafeCheckpointError, match='argparse.Namespace'):
        load_checkpoint_file(str(path))
    ckpt = load_checkpoint_file(str(path), extra_safe_globals=[argparse.Namespace, np.ndarray])
    assert ckpt['args'].lr == 0.1
    safe = torch.serialization.get_safe_globals()
    assert argparse.Namespace not in safe
    assert np.ndarray in safe  # registered for good: safe_globals() must not have removed it


@pytest.mark.parametrize('name,content,message', [
    ('empty.pth', b'', 'is empty'),
    ('random.pth', random.Random(0).randbytes(4096), 'not a PyTorch checkpoint: neither a zip'),
    ('text.pth', b'model = dict()\n' * 20, 'not a PyTorch checkpoint: neither a zip'),
])
def test_bad_files_get_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint_file(str(path))
    assert name in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_truncated_checkpoint(trained, tmp_path):
    data = (trained.work_dir / 'epoch_2.pth').read_bytes()
    path = tmp_path / 'half.pth'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r'half\.pth is truncated or not a PyTorch'):
        load_checkpoint_file(str(path))


def test_corrupted_bytes_fail_the_crc_check(tmp_path):
    path = tmp_path / 'rot.pth'
    torch.save({'w': torch.arange(256, dtype=torch.float32)}, path)
    data = bytearray(path.read_bytes())
    offset = bytes(data).index(torch.arange(256, dtype=torch.float32).numpy().tobytes())
    data[offset + 400] ^= 0xFF  # one flipped byte inside the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r'rot\.pth .*CRC mismatch'):
        load_checkpoint_file(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r'checkpoint not found: .*nope\.pth'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))


def test_atomic_save_never_leaves_partial_files(tmp_path):
    path = tmp_path / 'out.pth'
    save_checkpoint_atomic({'a': torch.ones(2)}, str(path))
    old = path.read_bytes()
    with pytest.raises(FileExistsError, match=r'out\.pth exists; pass --force'):
        save_checkpoint_atomic({'a': torch.zeros(2)}, str(path))
    assert path.read_bytes() == old

    class Unpicklable:

        def __reduce__(self):
            raise RuntimeError('interrupted while writing')

    with pytest.raises(RuntimeError, match='interrupted while writing'):
        save_checkpoint_atomic({'a': torch.ones(10000), 'b': Unpicklable()}, str(path),
                               overwrite=True)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.pth']
    save_checkpoint_atomic({'a': torch.zeros(2)}, str(path), overwrite=True)
    torch.testing.assert_close(load_checkpoint_file(str(path))['a'], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.pth']


def test_atomic_write_for_text_outputs(tmp_path):
    path = tmp_path / 'sub' / 'deploy.py'
    with atomic_write(str(path)) as tmp:
        assert os.path.dirname(tmp) == str(path.parent) and os.path.basename(tmp)[0] == '.'
        with open(tmp, 'w') as f:
            f.write('model = dict()\n')
    assert path.read_text() == 'model = dict()\n'
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0o600
