"""Redis URLs: what they may say, how they are shown, and what every client takes.

One URL is the single source of truth for a Redis connection: host, database,
credentials (`redis://user:password@host:6379/0`, an ACL user) and TLS
(`rediss://...?ssl_ca_certs=/etc/spiral/ca.pem`, redis-py's own query parameters, the
ones Celery documents for its Redis result backend). The libraries that connect do not
read TLS parameters alike: kombu connects to a bare `rediss://` broker *without
verifying the server* (it warns and uses CERT_NONE), Celery's result backend refuses
one without `ssl_cert_reqs`, celery-redbeat and redis-py verify by default. So the
parameters are read here, once, checked (values, files), taken off the URL, and given
to each client explicitly as the same options: the broker (`broker_use_ssl`, and
written out in full on its URL, which kombu also reads alone), the results
(`redis_backend_use_ssl`), beat (`redbeat_redis_use_ssl`), storage, locks and health
checks (redis-py, `spiral_tasks.storage.redis.connect`). Verification is on unless a
URL turns it off (`ssl_cert_reqs=none`).

A URL's password must never reach a log, an error message or a task result:
`shown_url` hides it, and works on any text (even one urllib cannot parse, which
would otherwise quote the password in its own error).
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
TLS_SCHEME = "rediss"
#: What replaces a password in anything shown.
HIDDEN = "***"
#: `ssl_cert_reqs` values, as kombu and Celery spell them.
CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
             "none": ssl.CERT_NONE, "CERT_REQUIRED": ssl.CERT_REQUIRED,
             "CERT_OPTIONAL": ssl.CERT_OPTIONAL, "CERT_NONE": ssl.CERT_NONE}
#: The TLS query parameters a URL may carry (redis-py's, and Celery's `*_use_ssl` keys).
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
TLS_PARAMETERS = ("ssl_cert_reqs", *TLS_FILES)
_UNPARSABLE = ("not a valid URL: a port that is not a number, or a password with a "
               "character a URL reserves (/ ? # @ [ ]): percent-encode it, e.g. / as %2F")
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|[?&])password=)[^&#]*")


def shown_url(url: str) -> str:
    """`url` with its password hidden, for messages and logs.

    Works on the raw text, not through urllib: a password with an unescaped `/`, `#`
    or `?` splits the URL in odd places (and makes urllib quote it in an error about
    the "port"). Everything between `://` and the last `@` is the user information:
    the part after its first `:` is hidden, and all of it when there is no `:` (a
    lone word there is a password to some clients). A `password=` query parameter is
    hidden too.
    """
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest:
        userinfo, _, address = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{HIDDEN}@{address}" if colon else f"{HIDDEN}@{address}"
    return _QUERY_PASSWORD.sub(rf"\g<1>{HIDDEN}", f"{scheme}{separator}{rest}")


@dataclass(frozen=True)
class RedisTls:
    """How a client checks a `rediss://` server and shows itself: `ssl_cert_reqs`
    (required unless the URL says otherwise), the CA file that signed the server's
    certificate (None: the system's trust store) and, for mutual TLS, the client's
    certificate and key."""

    cert_reqs: str = "required"
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def options(self) -> dict[str, Any]:
        """The keyword arguments redis-py's SSL connection takes, which are also what
        kombu (`broker_use_ssl`), Celery's result backend (`redis_backend_use_ssl`) and
        celery-redbeat (`redbeat_redis_use_ssl`) pass on to it."""
        options: dict[str, Any] = {"ssl_cert_reqs": CERT_REQS[self.cert_reqs]}
        for name, value in zip(TLS_FILES, (self.ca_certs, self.certfile, self.keyfile),
                               strict=True):
            if value is not None:
                options[name] = value
        return options


@dataclass(frozen=True)
class RedisAddress:
    """A checked Redis URL, split into what clients take: the URL without its TLS
    parameters (credentials kept) and the TLS options (None on `redis://`)."""

    url: str = ""
    tls: RedisTls | None = None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for `redis.Redis.from_url(self.url, ...)`."""
        return {} if self.tls is None else self.tls.options()

    def url_with_tls(self) -> str:
        """The URL with its TLS parameters written out in full (`ssl_cert_reqs`
        always): for kombu, which builds connections from a broker URL alone in places
        (Celery's `inspect conf` masks the URL through one) and, given no TLS
        parameters, would treat `rediss://` as "don't check"."""
        if self.tls is None:
            return self.url
        query = "&".join(f"{name}={quote(str(value), safe='/')}" for name, value in (
            ("ssl_cert_reqs", self.tls.cert_reqs), ("ssl_ca_certs", self.tls.ca_certs),
            ("ssl_certfile", self.tls.certfile), ("ssl_keyfile", self.tls.keyfile))
            if value is not None)
        return f"{self.url}{'&' if urlsplit(self.url).query else '?'}{query}"

    def without_credentials(self) -> tuple[str, dict[str, str]]:
        """The URL without user and password, and those as client options: for a
        setting that Celery's `inspect conf` (and so Flower) would show whole, where an
        option named `password` is masked."""
        parts = urlsplit(self.url)
        if parts.username is None and parts.password is None:
            return self.url, {}
        host = parts.netloc.rpartition("@")[2]
        credentials = {name: unquote(value) for name, value in
                       (("username", parts.username), ("password", parts.password))
                       if value is not None}
        return urlunsplit(parts._replace(netloc=host)), credentials


def is_redis_url(url: str) -> bool:
    return url.partition("://")[0] in REDIS_SCHEMES


def parse_redis_url(url: str) -> RedisAddress:
    """Check `url` and split it; `ValueError` says what is wrong, without quoting the
    password (nor any part of the URL urllib would quote from it)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(_UNPARSABLE) from None
    if "@" in parts.path + parts.fragment:
        # The user information ended early, at a reserved character of the password:
        # what follows would be misread (and quoting it would show the password).
        raise ValueError(_UNPARSABLE)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"
                         f", got {parts.scheme or 'none'!r}")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs the socket's path")
    if parts.scheme != "unix":
        if port == 0:
            raise ValueError("port must be 1-65535")
        _check_database(parts.path)
    kept, tls_values = _split_query(parts.query)
    tls = _tls(parts.scheme, tls_values)
    return RedisAddress(url=urlunsplit(parts._replace(query="&".join(kept))), tls=tls)


def redis_url_problem(url: str) -> str | None:
    """Why `url` would not connect as meant (or not at all), or None when it is usable."""
    try:
        parse_redis_url(url)
    except ValueError as exc:
        return str(exc)
    return None


def _check_database(path: str) -> None:
    database = path.strip("/")
    if database and not re.fullmatch(r"\d+", database):
        raise ValueError(f"the path must be a database number such as /0, got {path!r}")


def _split_query(query: str) -> tuple[list[str], dict[str, str]]:
    """The query's other parameters, as written, and its TLS ones, decoded. An
    `ssl_*` parameter this module does not know is refused: a misspelt one would
    be dropped by one client and obeyed by another."""
    kept: list[str] = []
    tls: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        name, _, value = item.partition("=")
        if not name.startswith("ssl_"):
            kept.append(item)
        elif name not in TLS_PARAMETERS:
            raise ValueError(f"unknown TLS parameter {name!r}: use "
                             f"{', '.join(TLS_PARAMETERS)}")
        elif name in tls:
            raise ValueError(f"{name} is given twice")
        else:
            tls[name] = unquote(value)
    return kept, tls


def _tls(scheme: str, values: dict[str, str]) -> RedisTls | None:
    if scheme != TLS_SCHEME:
        if values:
            raise ValueError(f"{', '.join(values)}: TLS parameters need a rediss:// URL "
                             f"(this one is {scheme}://, which would send them in clear)")
        return None
    cert_reqs = values.get("ssl_cert_reqs", "required")
    if cert_reqs not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs={cert_reqs!r}: choose required, optional or none")
    for name in TLS_FILES:
        if name in values:
            _check_file(name, values[name])
    if ("ssl_certfile" in values) != ("ssl_keyfile" in values):
        raise ValueError("ssl_certfile and ssl_keyfile go together (the client's "
                         "certificate and its key, for servers that verify clients)")
    return RedisTls(cert_reqs=cert_reqs, ca_certs=values.get("ssl_ca_certs"),
                    certfile=values.get("ssl_certfile"), keyfile=values.get("ssl_keyfile"))


def _check_file(name: str, path: str) -> None:
    if not path:
        raise ValueError(f"{name} is empty: give the path of a PEM file")
    if not os.path.isfile(path):
        raise ValueError(f"{name}={path!r}: no such file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{name}={path!r}: not readable by this process")
