"""Benchmark reports: a markdown table for people and a CSV for tools, written together."""
import csv
import os
import os.path as osp
from typing import List, Sequence

from .checkpoint import atomic_write


def write_report(out_dir: str, stem: str, markdown: str, rows: List[dict]) -> List[str]:
    """Write ``<stem>.md`` and ``<stem>.csv`` (one row per dict) into ``out_dir``.

    The CSV's columns are every key of any row, in first-seen order (missing cells empty).

    Each file is written atomically and replaces the previous report of that name. Returns
    the two paths.
    """
    if not rows:
        raise ValueError(f'no rows to write into {stem}.csv')
    os.makedirs(out_dir, exist_ok=True)
    paths = [osp.join(out_dir, f'{stem}.md'), osp.join(out_dir, f'{stem}.csv')]
    with atomic_write(paths[0], overwrite=True) as tmp:
        with open(tmp, 'w') as f:
            f.write(markdown)
    with atomic_write(paths[1], overwrite=True) as tmp:
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
            writer.writeheader()
            writer.writerows(rows)
    return paths


def environment_lines(packages: Sequence[str] = ()) -> List[str]:
    """Where a benchmark ran: the UTC date, the CPU (model, cores, the SIMD flags that decide
    kernel choice) and the versions of Python and of ``packages`` (distribution names; 'not
    installed' where one is missing)."""
    import datetime
    import platform
    from importlib import metadata
    cpu, flags = platform.processor() or 'unknown CPU', set()
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read().splitlines()
        cpu = next((line.split(':', 1)[1].strip() for line in info
                    if line.startswith('model name')), cpu)
        flags = set(next((line.split(':', 1)[1].split() for line in info
                          if line.startswith('flags')), []))
    except OSError:
        pass
    simd = [f for f in ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile')
            if f in flags]
    versions = []
    for package in packages:
        try:
            versions.append(f'{package} {metadata.version(package)}')
        except metadata.PackageNotFoundError:
            versions.append(f'{package} not installed')
    return [f'date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC',
            f'machine: {cpu}, {os.cpu_count()} logical cores, {platform.system()} '
            f'{platform.machine()}, SIMD: {", ".join(simd) or "none of AVX2/AVX-512"}',
            'versions: ' + ', '.join([f'Python {platform.python_version()}'] + versions)]
