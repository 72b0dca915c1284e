"""The one safe checkpoint loader of mmrepghost, and atomic writers.

torch >= 2.6 loads with ``weights_only=True``: unpickling may only rebuild tensors, plain
containers and explicitly allowlisted globals, so a checkpoint cannot run code. mmengine 0.10.7
calls ``torch.load`` without ``weights_only``, and the checkpoints its Runner writes (for mmdet
and mmpretrain alike) pickle a few non-tensor types in ``meta['message_hub']``, so ``mim test``
and ``--resume`` fail with ``UnpicklingError ... HistoryBuffer``. Passing ``weights_only=False``
would let a malicious checkpoint execute code; instead :func:`register_safe_globals` (run on
``import mmrepghost``) allowlists exactly the globals such checkpoints were found to contain:

* ``mmengine.logging.history_buffer.HistoryBuffer``: the logged values of the message hub;
* ``numpy.ndarray``, ``numpy.core.multiarray._reconstruct`` (arrays), ``numpy.dtype`` and the
  numeric dtype classes (``numpy.dtypes.Float64DType``, ``Int64DType``, ...: a rebuilt dtype
  must be of an allowlisted type) and ``numpy.core.multiarray.scalar`` (numpy scalars), under
  both numpy 1.x and 2.x module names;
* ``builtins.getattr``, but mapped to :func:`_history_buffer_method`: a HistoryBuffer pickles
  its statistics methods as ``getattr(HistoryBuffer, 'mean')``; any other lookup is refused.

Everything else (``os.system``, ``eval``, arbitrary classes) is still refused by torch.
"""
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, Iterable, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# the one atomic writer, shared with the PyTorch-free runtime (which cannot import this package)
from mmrepghost_runtime.files import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be loaded (empty, truncated, corrupted, unsafe)."""


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


def _numpy_rebuild_functions() -> list:
    """numpy's array/scalar rebuild functions under the 1.x and the 2.x module name."""
    from numpy.core import multiarray
    return [(getattr(multiarray, fn), f'{module}.{fn}') for fn in ('_reconstruct', 'scalar')
            for module in ('numpy.core.multiarray', 'numpy._core.multiarray')]


_NUMERIC_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                  np.uint32, np.uint64, np.float16, np.float32, np.float64)

SAFE_GLOBALS: List[Any] = [
    HistoryBuffer,
    np.ndarray,
    np.dtype,
    *(type(np.dtype(t)) for t in _NUMERIC_TYPES),  # numpy.dtypes.Float64DType, ...
    *_numpy_rebuild_functions(),
    (_history_buffer_method, 'builtins.getattr'),
]


def register_safe_globals() -> None:
    """Allowlist :data:`SAFE_GLOBALS` for ``torch.load(weights_only=True)`` (idempotent)."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


# torch.save's zip format and the legacy format (a pickled magic number, then the data)
_ZIP_MAGIC = b'PK\x03\x04'
_LEGACY_MAGIC = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)[2:-1]
# how torch's weights-only unpickler words a refused global, class or function
_REFUSED = re.compile(r'GLOBAL (\S+)|allowlisted.*but got (<class \S+>)|'
                      r'unrecognized function (.+)|refused (getattr\(.*?\))')


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
        CheckpointError: the file is empty, truncated, corrupted or not a PyTorch checkpoint.
        UnsafeCheckpointError: the file pickles a global outside the allowlist; the message
            names it, and nothing of the file was executed.
    """
    _check_file(path)
    register_safe_globals()
    # safe_globals() removes its globals on exit: never pass one that is registered for good
    extra = [g for g in extra_safe_globals if g not in torch.serialization.get_safe_globals()]
    try:
        with torch.serialization.safe_globals(extra):
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        if 'Attempting to deserialize object on' in str(error):
            raise  # a map_location problem, not a file problem; torch's message is clear
        refused = _refused_globals(path, error, extra)
        if refused:
            raise UnsafeCheckpointError(
                f'refused to load {path}: it pickles globals that are not allowlisted in '
                f'mmrepghost.utils.SAFE_GLOBALS: {", ".join(refused)}. Nothing in the file was '
                'executed. Re-save the weights from a trusted copy as a plain state dict, or '
                'review the type and, only if it is plain data, add it to SAFE_GLOBALS.'
            ) from None
        raise _corrupt(path, f'{type(error).__name__}: {_unpickler_reason(error)}') from None


def _check_file(path: str) -> None:
    """Fail early, naming ``path``, if it is missing, empty, truncated or of another format."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint {path} is empty (0 bytes)')
    with open(path, 'rb') as f:
        head = f.read(16)
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()  # CRC of every member: catches bit rot too
        except Exception as error:  # zipfile raises many types for a damaged archive
            raise _corrupt(path, f'incomplete or damaged zip archive ({error})') from None
        if damaged is not None:
            raise _corrupt(path, f'corrupted data, CRC mismatch in {damaged}')
    elif not (head[:1] == b'\x80' and head[2:].startswith(_LEGACY_MAGIC)):
        raise _corrupt(path, 'neither a zip archive nor the legacy torch format')


def _corrupt(path: str, detail: str) -> CheckpointError:
    return CheckpointError(f'{path} is truncated or not a PyTorch checkpoint: {detail}')


def _refused_globals(path: str, error: Exception, extra: list) -> List[str]:
    """The globals/types the unpickler refused (all of them where torch can list them)."""
    if not isinstance(error, pickle.UnpicklingError):
        return []
    match = _REFUSED.search(_unpickler_reason(error))
    if match is None:
        return []
    try:  # scans the pickle's GLOBAL opcodes without executing anything
        with torch.serialization.safe_globals(extra):
            listed = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: name what the unpickler reported
        listed = []
    return listed or [next(group for group in match.groups() if group)]


def _unpickler_reason(error: Exception) -> str:
    """The unpickler's own words, without torch's advice around them."""
    paragraphs = [p for p in str(error).split('\n\n')
                  if p.strip() and not p.strip().startswith('Check the documentation')]
    reason = paragraphs[-1].split('WeightsUnpickler error:')[-1] if paragraphs else ''
    return ' '.join(reason.split()) or '(no detail)'


def save_checkpoint_atomic(obj: Any, path: str, overwrite: bool = False) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    with atomic_write(path, overwrite) as tmp:
        torch.save(obj, tmp)
