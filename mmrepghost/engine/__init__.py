from .cpu_compatible_runner import CPUCompatibleRunner

__all__ = ['CPUCompatibleRunner']
