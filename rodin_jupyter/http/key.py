"""The API key, wrapped so that it cannot leak through a repr, a traceback or a log.

``%xmode Verbose`` prints argument values and loggers format arguments; a plain ``str``
key would show up there. :class:`ApiKey` only reveals the key through :meth:`reveal`,
which the HTTP layer calls when it builds the ``Authorization`` header.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping

from rodin_jupyter.errors import MissingKeyError
from rodin_jupyter.http.colab_key import colab_secret

KEY_VARIABLES = ("RODIN_API_KEY", "HYPER3D_API_KEY")


class ApiKey:
    """An opaque key: equal to itself, hashable, never printed."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "argument") -> None:
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1].strip()  # RODIN_API_KEY="'sk-...'": the quotes are not the key
        if not value:
            raise MissingKeyError("The Rodin API key is empty.")
        if any(ch in value for ch in "\r\n\x00"):
            raise MissingKeyError("The Rodin API key contains a line break; check how it was set.")
        if not (value.isascii() and value.isprintable()) or any(ch.isspace() for ch in value):
            # A pasted key with a zero-width or non-breaking space, or "Bearer <key>":
            # HTTP headers cannot carry it (or it could never be right). Say so up front.
            raise MissingKeyError(
                "The Rodin API key contains spaces or characters that are not plain ASCII; "
                "set the key alone, as Hyper3D shows it."
            )
        self._value = value
        self.source = source

    def reveal(self) -> str:
        """The key itself, for the Authorization header and nothing else."""
        return self._value

    def __repr__(self) -> str:
        return f"<ApiKey from {self.source}: redacted>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("ApiKey cannot be pickled")


def resolve_key(explicit: str | ApiKey | None = None,
                environ: Mapping[str, str] | None = None) -> ApiKey:
    """The key from the argument, else ``RODIN_API_KEY``, else ``HYPER3D_API_KEY``.

    Under Colab, when neither variable is set, the same names in its Secrets panel.
    """
    if isinstance(explicit, ApiKey):
        return explicit
    if explicit is not None and explicit.strip():
        return ApiKey(explicit)
    env = os.environ if environ is None else environ
    for name in KEY_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return ApiKey(value, source=name)
    found = colab_secret(KEY_VARIABLES) if environ is None else None  # Colab's Secrets panel
    if found is not None:
        return ApiKey(found[0], source=f"Colab secret {found[1]}")
    raise MissingKeyError(
        "No Rodin API key: set RODIN_API_KEY (or HYPER3D_API_KEY) in the environment "
        "before starting Jupyter; never paste the key into a cell."
    )


def key_fingerprint(environ: Mapping[str, str] | None = None) -> str:
    """A one-way digest of the key variables: tells accounts apart without holding a key."""
    env = os.environ if environ is None else environ
    seen = "\0".join(env.get(name, "") for name in KEY_VARIABLES)
    return hashlib.sha256(seen.encode("utf-8", "surrogatepass")).hexdigest()[:16]
