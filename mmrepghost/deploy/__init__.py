from .reparameterize import find_reparameterizable, max_abs_diff, reparameterize_model

__all__ = ['find_reparameterizable', 'max_abs_diff', 'reparameterize_model']
