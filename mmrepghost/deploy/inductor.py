"""``torch.compile`` for CPU inference of a deployed network: Inductor with ``freezing``."""
from typing import Callable

import torch
from torch import nn


def compile_inductor(module: nn.Module) -> Callable[..., object]:
    """``torch.compile`` (Inductor) with ``freezing``, called under ``no_grad``.

    Freezing folds the weights into the compiled graph as constants, so Inductor can pre-pack
    them for oneDNN's convolution kernels (PyTorch's recipe for CPU inference). The first call
    compiles (for its input shape; another shape recompiles).
    ``torch._inductor.config.freezing`` is set only around the calls (a recompilation also
    sees it), not for the rest of the process.
    """
    import torch._inductor.config as inductor_config
    compiled = torch.compile(module, backend='inductor')

    def run(*args):
        with torch.no_grad(), inductor_config.patch(freezing=True):
            return compiled(*args)

    return run
