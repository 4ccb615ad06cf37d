"""How a request leaves the process: which proxy, which CA bundle, which connections.

``trust_env`` is off on the session, so requests never picks a proxy, a ``.netrc`` entry
or a CA bundle behind our back; this module decides them instead, by one policy:

* a loopback base never goes through a proxy (whatever ``HTTP_PROXY`` / ``NO_PROXY`` say);
* plain http is only ever sent to loopback, so the key never reaches a proxy in clear text;
* an https base may go through ``HTTPS_PROXY`` / ``ALL_PROXY`` (honouring ``NO_PROXY``),
  always as a CONNECT tunnel: the proxy sees the host name, never the headers.

The connections never print their headers, even with ``http.client``'s ``debuglevel`` set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import requests
import requests.auth
import requests.utils
from urllib3.util import parse_url

from rodin_jupyter._version import __version__
from rodin_jupyter.errors import BadResponseError, InsecureURLError, RodinNetworkError
from rodin_jupyter.http.deadline import DeadlineAdapter
from rodin_jupyter.http.key import ApiKey
from rodin_jupyter.http.urls import BaseURL

CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class Secret(str):
    """A header value that never shows itself: ``%xmode Verbose`` prints frame locals."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


class BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization`` on the prepared request, as a :class:`Secret`.

    An auth object rather than a plain header: requests then never swaps in credentials
    from ``~/.netrc``, and the header's value shows as redacted in any traceback.
    """

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = Secret(f"Bearer {self._key.reveal()}")
        return request

    def __repr__(self) -> str:
        return "<bearer auth: redacted>"


class QuietConnection:
    """Mixed into urllib3's connection classes: ``debuglevel`` is always 0 for ours.

    ``http.client.HTTPConnection.debuglevel = 1`` is the usual recipe for debugging
    requests; it would print our ``Authorization`` header into the cell.
    """

    @property
    def debuglevel(self) -> int:
        return 0

    @debuglevel.setter
    def debuglevel(self, value: int) -> None:
        pass


_quiet_classes: dict[type, type] = {}


def _quiet_pool(pool: Any) -> Any:
    cls = getattr(pool, "ConnectionCls", None)
    if isinstance(cls, type) and not issubclass(cls, QuietConnection):
        quiet = _quiet_classes.get(cls)
        if quiet is None:
            quiet = type(f"Quiet{cls.__name__}", (QuietConnection, cls), {})
            _quiet_classes[cls] = quiet
        pool.ConnectionCls = quiet
    return pool


class QuietAdapter(DeadlineAdapter):
    """The deadline adapter, whose connections never print their headers."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:  # requests < 2.32.2
        return _quiet_pool(super().get_connection(*args, **kwargs))

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return _quiet_pool(super().get_connection_with_tls_context(*args, **kwargs))


def make_session() -> requests.Session:
    """A session that follows no redirect and trusts nothing from the environment."""
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = f"rodin-jupyter/{__version__}"
    # Compressed answers are refused: a gzip bomb must not get past the size cap.
    session.headers["Accept-Encoding"] = "identity"
    session.max_redirects = 0
    for prefix in ("https://", "http://"):
        session.mount(prefix, QuietAdapter())
    return session


def prepare_get(session: requests.Session, base: BaseURL, url: str,
                auth: requests.auth.AuthBase, hook: Callable[..., Any]) -> requests.PreparedRequest:
    """The GET, checked to go to the very host the URL rule was decided for."""
    request = session.prepare_request(requests.Request(
        "GET", url, auth=auth, headers={"Accept": "application/json"},
        hooks={"response": hook}))
    target = parse_url(request.url or "")
    if ((target.host or "").strip("[]").lower() != base.host
            or target.port != base.port or target.scheme != base.scheme):
        raise InsecureURLError("RODIN_API_BASE could not be sent as given; check it.")
    return request


def proxy_for(base: BaseURL, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy an https base goes through (``None``: direct). Never one for loopback."""
    if base.loopback or base.scheme != "https":
        return None
    env = os.environ if environ is None else environ
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY")
    if requests.utils.should_bypass_proxies(base.url, no_proxy=no_proxy):
        return None
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        value = env.get(name, "").strip()
        if value:
            return value if "://" in value else f"http://{value}"
    return None


def ca_bundle(environ: Mapping[str, str] | None = None) -> str | bool:
    """What to verify TLS against: ``REQUESTS_CA_BUNDLE`` (or ``CURL_CA_BUNDLE``) if set,
    else the default bundle. A variable that names no file says so, in one line."""
    env = os.environ if environ is None else environ
    for name in CA_VARIABLES:
        path = env.get(name, "").strip()
        if path:
            if not os.path.exists(path):
                shown = path if len(path) <= 80 and path.isprintable() else "a path"
                raise RodinNetworkError(
                    f"{name} names {shown}, which does not exist: set it to a CA bundle "
                    "file, or unset it to use the default certificates.")
            return path
    return True


def read_capped(response: requests.Response, cap: int, late: Callable[[], bool],
                too_late: Callable[[], Exception]) -> bytes:
    """The raw body, at most ``cap`` bytes and never past the deadline, on every urllib3.

    Compressed answers were not asked for and are refused unread (a gzip bomb, or
    ``gzip, gzip``, could grow far past the cap once decoded). Bytes come from
    ``http.client``'s own reader, whose chunk-size lines are bounded (urllib3 1.26's
    streaming reader reads a chunk-size line without limit).
    """
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        raise BadResponseError("The balance answer came compressed, which was not asked for: "
                               "refused unread, as it could be far too large.")
    length = response.headers.get("Content-Length", "").strip()
    declared = int(length) if length.isascii() and length.isdigit() else None
    if declared is not None and declared > cap:
        raise BadResponseError("The balance answer is far too large to be a balance.")
    chunks: list[bytes] = []
    size = 0
    while True:
        piece = response.raw.read(min(8192, cap + 1 - size), decode_content=False)
        if not piece:
            break
        size += len(piece)
        if size > cap:
            raise BadResponseError("The balance answer is far too large to be a balance.")
        if late():
            raise too_late()
        chunks.append(piece)
    if declared is not None and size < declared:
        raise BadResponseError("The balance answer was cut short (fewer bytes than its "
                               "Content-Length).")
    return b"".join(chunks)
