"""Keep credentials out of everything the project prints, logs or writes.

* `redact(text)`: in any text, the password (or token) of every `scheme://user:password@host` and
  the values of secret-looking query parameters (`?token=...`, `access_key=...`) become `***`, and
  so does every value of the secret environment variables below.
* `split_credentials(uri)`: a URI without its `user:password@` part, plus that user and password.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Optional

MASK = "***"
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCESS_KEY", "RAY_AUTH_TOKEN",
              "DATABRICKS_TOKEN", "HF_TOKEN")
MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
# scheme://[user:]secret@ : keep the user name, mask the rest; a lone `token@` is masked whole
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/\s@?#]+)@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&;](?:[\w.\-]*(?:token|passw|pwd|secret|key|auth|signature|sig|credential)"
                           r"[\w.\-]*)=)(?P<value>[^&;#\s'\"]*)", re.IGNORECASE)


def _mask_userinfo(match: re.Match) -> str:
    user, sep, _secret = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if sep else f"{match['scheme']}{MASK}@"


def redact(text: object) -> str:
    """`text` (made a string) with credentials in URIs and the values of secret env variables masked."""
    out = _USERINFO.sub(_mask_userinfo, str(text))
    out = _SECRET_QUERY.sub(lambda m: f"{m['key']}{MASK}", out)
    for name in SECRET_ENV:
        value = os.environ.get(name, "")
        if len(value) >= MIN_SECRET_LEN:
            out = out.replace(value, MASK)
    return out


def split_credentials(uri: str) -> tuple[str, Optional[str], Optional[str]]:
    """(uri without `user:password@`, user, password); user and password are None when absent."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.username is None and parsed.password is None:
        return uri, None, None
    host = parsed.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parsed.port}" if parsed.port else "")
    clean = urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
    unquote = urllib.parse.unquote
    return clean, unquote(parsed.username) if parsed.username else None, \
        unquote(parsed.password) if parsed.password is not None else None


__all__ = ["redact", "split_credentials", "MASK", "SECRET_ENV"]
