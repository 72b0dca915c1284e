"""Does a state dict fit a model? The one comparison of tensor names and shapes.

Every loader asks it: ``init_cfg`` Pretrained (the backbone), the tools' loader (the whole
model, train or deploy structure), the runner (the backbone part of a checkpoint) and the
official/timm weight converter. Each words its own error from the :class:`StateDictFit`.
"""
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Tuple


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model (names or shapes)."""


def _shape(value: Any) -> Tuple[int, ...]:
    return tuple(getattr(value, 'shape', ()))


class StateDictFit(NamedTuple):
    """What keeps a state dict from fitting a model; every list is empty when it fits."""
    missing: List[str]  # keys the model has and the state dict lacks
    unexpected: List[str]  # keys the state dict has and the model lacks
    misshapen: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]  # key, file's, model's shape

    @property
    def fits(self) -> bool:
        return not (self.missing or self.unexpected or self.misshapen)

    @property
    def num_problems(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.misshapen)

    def summary(self) -> str:
        """'' when it fits, else counts with a few examples of each kind of problem."""
        shapes = [f'{key} {got} vs {want}' for key, got, want in self.misshapen]
        parts = [f'{len(items)} {what} (e.g. {items[:n]})' for items, what, n in (
            (self.missing, 'missing keys', 3), (self.unexpected, 'unexpected keys', 3),
            (shapes, 'of another shape, checkpoint vs model', 2)) if items]
        return ', '.join(parts)


def fit_state_dict(expected: Mapping[str, Any], state_dict: Mapping[str, Any],
                   prefix: str = '', allow_unexpected: bool = False,
                   allow_missing: Optional[Callable[[str], bool]] = None) -> StateDictFit:
    """Compare the names and shapes of ``state_dict`` with those of ``expected``.

    Args:
        expected: the model's state dict (names and shapes are read, values are not).
        state_dict: the tensors to load.
        prefix: compare only the keys of ``state_dict`` that start with it against
            ``prefix + key`` of ``expected`` (e.g. ``'backbone.'``); names are reported with it.
        allow_unexpected: keys of ``state_dict`` the model lacks are not problems.
        allow_missing: keys of ``expected`` for which it is true may be absent.

    Lists follow the order of ``expected`` (``unexpected``: of ``state_dict``).
    """
    want = {prefix + key: value for key, value in expected.items()}
    got = {key: value for key, value in state_dict.items() if key.startswith(prefix)}
    missing = [key for key in want if key not in got
               and not (allow_missing is not None and allow_missing(key[len(prefix):]))]
    unexpected = [] if allow_unexpected else [key for key in got if key not in want]
    misshapen = [(key, _shape(got[key]), _shape(value)) for key, value in want.items()
                 if key in got and _shape(got[key]) != _shape(value)]
    return StateDictFit(missing, unexpected, misshapen)
