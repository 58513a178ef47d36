"""Passwords in text: finding a database URL's password, and keeping it out of every message."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

HIDDEN = "a URL with a password (not shown)"
"""What a message says instead of a value that holds a password."""

# user:password@ after a scheme's //, or at the start of a word without one (flags:pw@db/flags).
# The password runs to the last @ of the word: libpq reads `u:p@ss@host`, `u:p#ss@host` and
# `u:p?ss@host` as the password p@ss, p#ss, p?ss, where a URL parser stops at the first # or ?.
_USERINFO = re.compile(r"(?:://|(?<![^\s'\"=(,]))([^\s/?#@:'\"]*):(?!//)((?:(?!://)[^\s'\"])*)@")
# password=..., also inside a longer name (PGPASSWORD=...).
_KEYWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&;'\"]*)")


def has_password(url: str) -> bool:
    """True when a database URL carries a password, in its userinfo or its query string."""
    # A libpq key/value string (`host=db password=...`) is not a URL but holds a password all the same.
    if re.search(r"(?i)\bpassword\s*=", url) is not None:
        return True
    if re.search(r"://[^\s/?#@:]*:[^\s]*@", url) is not None:  # user:password@, whatever the password holds
        return True
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not parseable as a URL (a bad IPv6 host): look for user:password@ by hand
        return re.search(r"://[^/?#@]*:[^/?#@]*@", url) is not None
    query = {k.lower() for k in parse_qs(parts.query)}
    return bool(password) or "password" in query


def holds_password(text: str) -> bool:
    """True when `text` looks like it carries a password: a URL's, a libpq `password=`, or `user:pw@host`."""
    return has_password(text) or _USERINFO.search(text) is not None


def scrub(text: str) -> str:
    """`text` with every password it seems to hold replaced by `***` (user:***@host, password=***)."""
    if "@" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: m[0][: m.start(2) - m.start(0)] + "***@", text)
    return _KEYWORD.sub(lambda m: m[1] + "***", text)
