"""Identifiers in the shapes the real systems use.

* Salesforce record Ids: a 15-character, case-sensitive base (3-character key prefix, 2-character
  pod, a reserved ``0`` and 9 base-62 characters) and the 18-character, case-insensitive form the
  API returns: the base plus a 3-character checksum that encodes where the upper-case letters
  are. The checksum is Salesforce's real algorithm, so Ids made here round-trip through any
  tool that validates them, and a 15-character Id typed into another system (Zendesk's
  ``external_id``, say) can be matched back exactly as in production.
* Stripe object ids: ``cus_``/``sub_``/``in_``/``ch_``/``dp_`` plus 14 base-62 characters.
* Product ids: ``acct_000123`` and ``user_0000123``, as the product's own database numbers them.

Numbers are scrambled by a bijection before encoding so consecutive records do not get
consecutive-looking Ids (and the checksums vary), while the same number always gives the same
Id: generation stays deterministic and the sandbox servers can mint new Ids from a counter
without colliding with generated ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

# Salesforce key prefixes of the objects the sandbox holds.
SF_PREFIX = {
    "User": "005",
    "Account": "001",
    "Contact": "003",
    "Task": "00T",
    "Opportunity": "006",
    "NPS_Response__c": "a0N",
}
SF_POD = "5g"  # the instance part of every generated Id: one org, one pod

_LOW_SPACE = 62**7  # the scrambled low part: 7 base-62 characters, unique per record number
_MAX_NUMBER = 2**31  # keeps number * multiplier inside int64
# Odd and not a multiple of 31, hence invertible modulo 62**7 = 2**7 * 31**7: a bijection.
_SCRAMBLE = 0x5BD1E995


def salesforce_checksum(id15: str) -> str:
    """The 3-character case-safe suffix of a 15-character Salesforce Id.

    Each 5-character chunk gives one suffix character: bit ``i`` is set when the chunk's
    ``i``-th character is an upper-case letter, and the 5-bit number indexes ``A..Z0..5``.
    """
    if len(id15) != 15 or not id15.isalnum():
        raise ValueError(f"not a 15-character Salesforce Id: {id15!r} (expected 15 letters/digits)")
    suffix = []
    for start in (0, 5, 10):
        bits = sum(1 << i for i, ch in enumerate(id15[start : start + 5]) if "A" <= ch <= "Z")
        suffix.append(CHECKSUM_ALPHABET[bits])
    return "".join(suffix)


def to_18(sf_id: str) -> str:
    """The 18-character form of a Salesforce Id given in either form."""
    if len(sf_id) == 18:
        return sf_id[:15] + salesforce_checksum(sf_id[:15])
    return sf_id + salesforce_checksum(sf_id)


def to_15(sf_id: str) -> str:
    """The case-sensitive 15-character form of a Salesforce Id given in either form."""
    if len(sf_id) not in (15, 18):
        raise ValueError(f"not a Salesforce Id: {sf_id!r} (expected 15 or 18 characters)")
    return sf_id[:15]


def is_valid_salesforce_id(sf_id: str) -> bool:
    """True for a well-formed 15-character Id or an 18-character Id with a correct checksum."""
    if not isinstance(sf_id, str) or len(sf_id) not in (15, 18) or not sf_id.isalnum():
        return False
    return len(sf_id) == 15 or sf_id[15:] == salesforce_checksum(sf_id[:15])


def _scrambled_chars(numbers: Iterable[int], width: int, salt: int) -> np.ndarray:
    """An (n, width) uint8 array of base-62 ASCII codes, unique per number (width >= 7).

    The last 7 characters are a bijection of the number; the leading ones vary with it so Ids
    do not share a long common prefix.
    """
    nums = np.asarray(numbers if isinstance(numbers, np.ndarray) else list(numbers), dtype=np.int64)
    if len(nums) and (nums.min() < 0 or nums.max() >= _MAX_NUMBER):
        raise ValueError(f"record numbers must be in [0, {_MAX_NUMBER}), got {nums.min()}..{nums.max()}")
    low = (nums * _SCRAMBLE + salt) % _LOW_SPACE
    high = (nums * 40_503 + salt * 977 + 3_141_592_653) % (62 ** (width - 7))
    digits = np.empty((len(nums), width), dtype=np.int64)
    for pos, (value, size) in enumerate([(high, width - 7), (low, 7)]):
        offset = 0 if pos == 0 else width - 7
        for k in range(size - 1, -1, -1):
            digits[:, offset + k] = value % 62
            value = value // 62
    return np.frombuffer(BASE62.encode(), dtype=np.uint8)[digits]


def salesforce_ids(object_name: str, numbers: Iterable[int]) -> list[str]:
    """18-character Salesforce Ids for record ``numbers`` of ``object_name`` (vectorized).

    ``object_name`` is a key of ``SF_PREFIX`` (``"Account"``) or a literal 3-character prefix.
    """
    prefix = SF_PREFIX.get(object_name, object_name)
    if len(prefix) != 3 or not prefix.isalnum():
        raise ValueError(f"unknown Salesforce object {object_name!r}; use one of {sorted(SF_PREFIX)}")
    chars = _scrambled_chars(numbers, 9, salt=7_654_321)
    if len(chars) == 0:
        return []
    body = np.empty((len(chars), 18), dtype=np.uint8)
    body[:, :6] = np.frombuffer((prefix + SF_POD + "0").encode(), dtype=np.uint8)
    body[:, 6:15] = chars
    upper = (body[:, :15] >= ord("A")) & (body[:, :15] <= ord("Z"))
    bits = (upper.reshape(-1, 3, 5) * (1 << np.arange(5))).sum(axis=2)
    body[:, 15:] = np.frombuffer(CHECKSUM_ALPHABET.encode(), dtype=np.uint8)[bits]
    return body.view("S18").ravel().astype(str).tolist()


def salesforce_id(object_name: str, number: int) -> str:
    """The 18-character Salesforce Id of record ``number`` of ``object_name``."""
    return salesforce_ids(object_name, [number])[0]


def stripe_ids(prefix: str, numbers: Iterable[int]) -> list[str]:
    """Stripe-style ids (``cus_`` + 14 base-62 characters) for record ``numbers``."""
    chars = _scrambled_chars(numbers, 14, salt=1_234_567 + sum(map(ord, prefix)))
    return [f"{prefix}_{s}" for s in chars.view("S14").ravel().astype(str).tolist()]


def stripe_id(prefix: str, number: int) -> str:
    """The Stripe-style id of record ``number`` with ``prefix`` (``cus``, ``sub``, ``in`` ...)."""
    return stripe_ids(prefix, [number])[0]


def product_account_id(number: int) -> str:
    """The product database's account id: ``acct_000123``."""
    return f"acct_{number:06d}"


def product_user_id(number: int) -> str:
    """The product database's user id: ``user_0000123``."""
    return f"user_{number:07d}"
