"""Benchmark reports: a markdown table for people and a CSV for tools, written together."""
import csv
import os
import os.path as osp
from typing import List

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
