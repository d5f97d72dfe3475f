"""ASCII digit checks for values that are then given to int()."""


def is_digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits. `str.isdigit()` is also true for "²" and
    other Unicode digits that int() refuses, which turned hostile input into 500s."""
    return text.isascii() and text.isdigit()
