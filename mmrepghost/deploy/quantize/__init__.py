"""INT8 post-training quantization of deployed models (``tools/quantize.py``)."""
from .common import (BACKENDS, LayerRecord, QuantizeError, QuantizeReport, calibration_inputs,
                     calibration_paths, cosine, match_patterns, report_paths, require, sqnr_db)

__all__ = [
    'BACKENDS', 'LayerRecord', 'QuantizeError', 'QuantizeReport', 'calibration_inputs',
    'calibration_paths', 'cosine', 'match_patterns', 'report_paths', 'require', 'sqnr_db'
]
