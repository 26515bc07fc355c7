"""Optional dependencies: which extra a service needs, checked before it starts.

A node and ``swarmget get`` need only the base dependencies; the hub and the relay keep
their state in a database through SQLAlchemy (``pip install 'swarmget[hub]'`` or
``'swarmget[relay]'``), and a replicated hub on PostgreSQL needs asyncpg (``[postgres]``).
``require_extra`` turns a missing module into one clear ``MissingExtra`` instead of a
traceback from deep inside the service.
"""

from __future__ import annotations

import importlib

from swarmget.core.errors import MissingExtra

__all__ = ["EXTRA_MODULES", "require_extra"]

#: The modules each extra brings, imported (not only found) to check they really work.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "hub": ("sqlalchemy", "sqlalchemy.ext.asyncio", "aiosqlite", "greenlet"),
    "relay": ("sqlalchemy", "sqlalchemy.ext.asyncio", "aiosqlite", "greenlet"),
    "postgres": ("asyncpg",),
}


def require_extra(extra: str, *, service: str | None = None) -> None:
    """Raise ``MissingExtra`` (one line: what is missing, what to install) unless every
    module of ``extra`` imports."""
    for name in EXTRA_MODULES[extra]:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing = exc.name or name
            raise MissingExtra(
                f"the {service or extra} needs the optional dependencies of swarmget[{extra}] "
                f"(module {missing!r} is missing): pip install 'swarmget[{extra}]'",
                extra=extra,
            ) from exc
