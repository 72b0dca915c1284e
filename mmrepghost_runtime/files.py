"""Atomic file writing: the one implementation, for the runtime (sidecars, drawn images) and
for ``mmrepghost`` (checkpoints, configs, ONNX files: ``mmrepghost.utils.atomic_write``).
Torch-free, like everything in this package."""
import contextlib
import os
import os.path as osp
import tempfile
from typing import Iterator

__all__ = ['atomic_write', 'atomic_write_bytes']


@contextlib.contextmanager
def atomic_write(path: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    An interruption leaves the old file (or none), never a partial one and no temporary file.
    An existing ``path`` is only replaced with ``overwrite=True`` (``FileExistsError``
    otherwise). The new file gets the usual ``0o666 & ~umask`` permissions (``mkstemp``
    alone would make it private).
    """
    if osp.exists(path) and not overwrite:
        raise FileExistsError(f'{path} exists; pass --force (overwrite=True) to replace it')
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=directory)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, 'ab') as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, overwrite) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
