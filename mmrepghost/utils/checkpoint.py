"""The one safe checkpoint loader of mmrepghost, and atomic writers.

torch >= 2.6 loads with ``weights_only=True``: unpickling may only rebuild tensors, plain
containers and explicitly allowlisted globals, so a checkpoint cannot run code. mmengine 0.10.7
calls ``torch.load`` without ``weights_only``, and the checkpoints its Runner writes pickle a
few non-tensor types (the message hub's ``HistoryBuffer`` and numpy arrays/scalars), so
``mim test`` and ``--resume`` fail with ``UnpicklingError``. Disabling ``weights_only`` would let
a malicious checkpoint execute code; instead :func:`register_safe_globals` (run on
``import mmrepghost``) allowlists exactly the globals such checkpoints contain:

* ``numpy.ndarray``, ``numpy.dtype`` and its classes (``numpy.dtypes.Float64DType``, ...),
  ``numpy.core.multiarray._reconstruct`` and ``numpy.core.multiarray.scalar``: how numpy
  arrays and scalars pickle;
* ``mmengine.logging.HistoryBuffer``: the logged values of the message hub;
* ``builtins.getattr``, but only as :func:`_history_buffer_method`: a HistoryBuffer pickles its
  statistics methods as ``getattr(HistoryBuffer, 'mean')``; any other ``getattr`` is refused.

Everything else (``os.system``, ``eval``, arbitrary classes) is still refused by torch.
"""
import contextlib
import os
import os.path as osp
import pickle
import tempfile
import zipfile
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from mmengine.logging import HistoryBuffer


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded (empty, truncated, not a checkpoint, unsafe)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint pickles a global that is not allowlisted; nothing of it was executed."""


def _history_buffer_method(owner: Any, name: str) -> Any:
    """``getattr`` restricted to the statistics methods of ``HistoryBuffer``."""
    allowed = {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and name in allowed:
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'refused getattr({owner!r}, {name!r}) in a checkpoint: only the statistics methods '
        'of mmengine.logging.HistoryBuffer may be looked up')


def _numpy_multiarray_globals() -> list:
    """numpy's array/scalar rebuild functions under both module spellings (1.x and 2.x)."""
    from numpy.core import multiarray  # numpy 2 keeps this path as an alias of numpy._core
    return [(getattr(multiarray, fn), f'{module}.{fn}') for fn in ('_reconstruct', 'scalar')
            for module in ('numpy.core.multiarray', 'numpy._core.multiarray')]


SAFE_GLOBALS = [
    np.ndarray,
    np.dtype,
    *(getattr(np.dtypes, name) for name in np.dtypes.__all__),  # Float64DType, ...
    *_numpy_multiarray_globals(),
    HistoryBuffer,
    (_history_buffer_method, 'builtins.getattr'),
]


def register_safe_globals() -> None:
    """Allowlist :data:`SAFE_GLOBALS` for ``torch.load(weights_only=True)`` (idempotent)."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


def load_checkpoint_file(path: str, map_location: Any = 'cpu',
                         extra_safe_globals: Iterable = ()) -> Any:
    """Load ``path`` with ``weights_only=True`` and the allowlist; one clear error per failure.

    Args:
        path: the checkpoint file.
        map_location: as for ``torch.load``.
        extra_safe_globals: more globals to allow for this load only (e.g. the
            ``argparse.Namespace`` that timm's training script stores under ``args``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated or not a PyTorch checkpoint.
        UnsafeCheckpointError: the file pickles a global outside the allowlist; the message
            names it, and nothing of the file was executed.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes)')
    register_safe_globals()
    try:
        with torch.serialization.safe_globals(list(extra_safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _unsafe_globals(path, extra_safe_globals)
        reason = _unpickler_reason(error)
        if unsafe or 'global' in reason.lower() or 'refused getattr' in reason:
            names = ', '.join(unsafe) or reason
            raise UnsafeCheckpointError(
                f'refused to load {path}: it pickles globals that are not allowlisted '
                f'({names}). Nothing in the file was executed. Re-save the weights as a plain '
                'state dict, or review the type and add it to '
                'mmrepghost.utils.checkpoint.SAFE_GLOBALS if it is a data type.') from error
        raise CheckpointError(f'{path} is truncated or not a PyTorch checkpoint: '
                              f'{reason}') from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise CheckpointError(f'{path} is truncated or not a PyTorch checkpoint: '
                              f'{error}') from error


def _unpickler_reason(error: Exception) -> str:
    """The unpickler's own words from torch's long ``weights_only`` error message."""
    text = str(error)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
    return ' '.join(text.strip().split('\n\n')[0].split())


def _unsafe_globals(path: str, extra_safe_globals: Iterable) -> list:
    try:
        with torch.serialization.safe_globals(list(extra_safe_globals)):
            return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a corrupt file: the caller reports it as such
        return []


@contextlib.contextmanager
def atomic_write(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    An interruption leaves the old file (or none), never a partial one. An existing ``path``
    is only replaced with ``overwrite=True``.
    """
    if osp.exists(path) and not overwrite:
        raise FileExistsError(f'{path} exists; pass --force (overwrite=True) to replace it')
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def save_checkpoint_atomic(obj: Any, path: str, overwrite: bool = False) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    with atomic_write(path, overwrite) as tmp:
        torch.save(obj, tmp)
