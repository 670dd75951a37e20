"""Base58 (bitcoin alphabet), the text form of libp2p peer ids.

Small and dependency-free so that ``yagna.core`` can compute node ids without
importing libp2p. Not constant-time; never use it for secrets.
"""

from __future__ import annotations

__all__ = ["ALPHABET", "b58encode", "b58decode"]

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(ALPHABET)}


def b58encode(data: bytes) -> str:
    """Encode bytes; each leading zero byte becomes a leading ``"1"``."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(ALPHABET[rem])
    return "1" * zeros + "".join(reversed(digits))


def b58decode(text: str) -> bytes:
    """Decode base58 text; raise ``ValueError`` on any character outside the alphabet."""
    if not isinstance(text, str):
        raise ValueError(f"base58 input must be str, got {type(text).__name__}")
    number = 0
    for char in text:
        value = _INDEX.get(char)
        if value is None:
            raise ValueError(f"invalid base58 character {char!r}")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return b"\0" * zeros + body
