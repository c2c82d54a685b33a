"""Keep secrets out of every log line: URL credentials and secret-named fields."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["MASK", "is_secret_key", "mask_url", "mask_value"]

MASK = "***"

# user:password@ inside any scheme://... URL, anywhere in a string.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@"
)
_SECRET_KEY = re.compile(r"password|passwd|secret|token|api_?key", re.IGNORECASE)


def mask_url(text: str) -> str:
    """Replace the password of every ``scheme://user:password@`` in ``text``."""
    if "://" not in text:
        return text
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """True for field names like password, client_secret, auth_token, api_key.

    Answers are remembered (bounded: names can come from data): log fields use a few
    dozen names, each asked on every line that carries it (~35 a fill report)."""
    return _SECRET_KEY.search(key) is not None


def mask_value(key: str, value: str) -> str:
    """The value as it may be logged under ``key``."""
    if is_secret_key(key):
        return MASK
    return mask_url(value)
