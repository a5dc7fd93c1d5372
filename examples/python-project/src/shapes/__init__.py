"""Areas of simple shapes."""


def rectangle(width: float, height: float) -> float:
    """The area of a width x height rectangle."""
    if width < 0 or height < 0:
        raise ValueError("sides cannot be negative")
    return width * height


def square(side: float) -> float:
    """The area of a square."""
    return rectangle(side, side)
