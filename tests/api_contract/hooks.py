"""schemathesis hooks for the sync server's API: how to make values of the
custom formats the OpenAPI document names.

`automerge-document-id` is automerge-repo's document id: 16 random bytes in
base58check (base58 of the bytes and the first four bytes of their double
SHA-256). A regular expression cannot say "the checksum matches", so without
this hook schemathesis would send strings the server must refuse.
"""

import hashlib

import schemathesis
from hypothesis import strategies as st

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number = int.from_bytes(data, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = ALPHABET[digit] + text
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + text


schemathesis.openapi.format(
    "automerge-document-id",
    st.binary(min_size=16, max_size=16).map(base58check),
)
