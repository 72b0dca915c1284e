"""onnxruntime's session profile files, read once: the kernel events per node."""
import json
from typing import Dict, List, Tuple


def kernel_times(path: str, skip: int = 0) -> Dict[str, Tuple[str, List[float]]]:
    """``{kernel name: (op type, [ms per run])}`` of the kernel events of a profile file
    (``SessionOptions.enable_profiling``), in order, without each kernel's first ``skip``
    runs (a kernel's n-th event is its n-th run). The kernel name is onnxruntime's node name
    after its graph optimizations (fused and layout-transformed nodes are renamed)."""
    with open(path) as f:
        events = json.load(f)
    times: Dict[str, Tuple[str, List[float]]] = {}
    for event in events:
        name = event.get('name', '')
        if event.get('cat') == 'Node' and name.endswith('_kernel_time'):
            times.setdefault(name[:-len('_kernel_time')], (event['args']['op_name'], []))[
                1].append(event['dur'] / 1e3)
    return {name: (op, ms[skip:]) for name, (op, ms) in times.items()}
