"""Channel rounding of the official RepGhostNet."""


def make_divisible(value: float, divisor: int, min_ratio: float = 0.9) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% below it.

    This is the channel rounding of the official RepGhostNet (and MobileNet/GhostNet).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < min_ratio * value else rounded
