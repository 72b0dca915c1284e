"""Safe loading of OpenMMLab checkpoints with torch's weights_only=True, and atomic saving."""
import os
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_checkpoint
from torch import nn
from torch.utils.data import Dataset

import mmrepghost  # noqa: F401  (installs the allowlist)
from mmrepghost.utils import (CheckpointError, UnsafeCheckpointError, atomic_write,
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


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('runner')
    runner = make_runner(work_dir)
    runner.train()
    return work_dir


def test_runner_checkpoint_loads_with_weights_only(runner_checkpoint):
    work_dir = runner_checkpoint
    path = str(work_dir / 'epoch_2.pth')
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
    model = ToyModel()
    load_checkpoint(model, path)  # mmengine -> torch.load(path) with weights_only=True
    ckpt = load_checkpoint_file(path)
    torch.testing.assert_close(model.lin.weight, ckpt['state_dict']['lin.weight'])
    loss = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss, HistoryBuffer) and loss.statistics('mean') == loss.mean()


def test_runner_resumes_from_checkpoint(runner_checkpoint, tmp_path):
    work_dir = runner_checkpoint
    runner = make_runner(tmp_path, resume=True, load_from=str(work_dir / 'epoch_1.pth'))
    runner.train()  # resumes at epoch 1 and runs epoch 2
    assert runner.epoch == 2 and runner.iter == 4
    resumed = torch.load(tmp_path / 'epoch_2.pth')
    assert resumed['meta']['epoch'] == 2


class Payload:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Payload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r'posix\.system|os\.system') as info:
        load_checkpoint_file(str(path))
    assert 'Nothing in the file was executed' in str(info.value)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(ToyModel(), str(path))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not marker.exists()


class GetattrPayload:
    """Abuses the allowlisted getattr to reach something other than a statistics method."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_getattr_is_limited_to_history_buffer_statistics(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': GetattrPayload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refused getattr.*'__init__'"):
        load_checkpoint_file(str(path))


@pytest.mark.parametrize('content,message', [
    (b'', 'is empty'),
    (b'\x00not a checkpoint at all' * 10, 'truncated or not a PyTorch checkpoint'),
])
def test_bad_files_get_one_clear_error(tmp_path, content, message):
    path = tmp_path / 'bad.pth'
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint_file(str(path))
    assert 'bad.pth' in str(info.value)


def test_truncated_checkpoint(runner_checkpoint, tmp_path):
    work_dir = runner_checkpoint
    data = (work_dir / 'epoch_2.pth').read_bytes()
    path = tmp_path / 'half.pth'
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='half.pth is truncated or not a PyTorch'):
        load_checkpoint_file(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint not found: .*nope.pth'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))


def test_atomic_save_never_leaves_partial_files(tmp_path):
    path = tmp_path / 'out.pth'
    save_checkpoint_atomic({'a': torch.ones(2)}, str(path))
    old = path.read_bytes()
    with pytest.raises(FileExistsError, match='out.pth exists; pass --force'):
        save_checkpoint_atomic({'a': torch.zeros(2)}, str(path))
    assert path.read_bytes() == old

    class Unpicklable:

        def __reduce__(self):
            raise RuntimeError('interrupted while writing')

    with pytest.raises(RuntimeError, match='interrupted while writing'):
        save_checkpoint_atomic({'a': Unpicklable()}, str(path), overwrite=True)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.pth']
    save_checkpoint_atomic({'a': torch.zeros(2)}, str(path), overwrite=True)
    torch.testing.assert_close(load_checkpoint_file(str(path))['a'], torch.zeros(2))


def test_atomic_write_for_text_outputs(tmp_path):
    path = tmp_path / 'deploy.py'
    with atomic_write(str(path)) as tmp:
        with open(tmp, 'w') as f:
            f.write('model = dict()\n')
    assert path.read_text() == 'model = dict()\n'
