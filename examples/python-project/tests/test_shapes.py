import pytest

from shapes import rectangle, square


def test_rectangle() -> None:
    assert rectangle(2, 3) == 6


def test_square() -> None:
    assert square(4) == 16


def test_negative_sides_are_refused() -> None:
    with pytest.raises(ValueError):
        rectangle(-1, 2)
