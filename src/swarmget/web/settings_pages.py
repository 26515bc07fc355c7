"""The portal's settings page: this node's helper limits (slots, rate limit, daily quota,
"pause helping"), changed at run time through the same service as ``PUT /v1/settings``
(``swarmget.node.settings``), with each value's source shown and errors tied to their fields.

Only the fields whose value differs from the one in force are sent: a field left as it was
keeps coming from where it came from (the config file, or an earlier change). "Back to the
config file" drops every kept value. The guard checks the form's CSRF token (``access``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from swarmget.core.units import parse_size
from swarmget.node.settings import NAMES, RuntimeSettings
from swarmget.protocol.user import MAX_SLOTS, SettingsUpdate, SettingsView
from swarmget.web.humanize import human_bytes
from swarmget.web.site import PORTAL, PREFIX, SESSION, form_field

__all__ = ["save_settings", "settings_page"]

MIN_RATE = 1024  # bytes/s (SettingsUpdate's lower bound)


def _settings(request: web.Request) -> RuntimeSettings:
    settings = request.app[PORTAL].api.settings
    if settings is None:
        raise web.HTTPNotFound(text="this node has no runtime settings")
    return settings


def _size_text(value: Any) -> str:
    """A byte count as the form shows it ("" for none): ``2M``-style, exact."""
    if value is None:
        return ""
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def _form_of(view: SettingsView) -> dict[str, Any]:
    return {
        "slots": str(view.slots.value),
        "rate_limit": _size_text(view.rate_limit.value),
        "daily_quota": _size_text(view.daily_quota.value),
        "helping_paused": bool(view.helping_paused.value),
    }


def _render(
    request: web.Request,
    view: SettingsView,
    *,
    form: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    saved: bool = False,
    status: int = 200,
) -> web.Response:
    portal = request.app[PORTAL]
    return portal.page(
        "settings.html",
        status=status,
        nav="settings",
        csrf=request[SESSION].csrf,
        view=view,
        form=form or _form_of(view),
        errors=errors or {},
        saved=saved,
        max_slots=MAX_SLOTS,
        human_bytes=human_bytes,
    )


async def settings_page(request: web.Request) -> web.Response:
    view = _settings(request).view()
    return _render(request, view, saved=request.query.get("saved") == "1")


def _parse_size(raw: str, name: str, errors: dict[str, str], least: int) -> int | None:
    if not raw.strip():
        return None
    try:
        value = parse_size(raw)
    except ValueError:
        errors[name] = f"not a size: {raw!r} (try 2M, 512K, 10G; empty: no limit)"
        return None
    if value < least:
        errors[name] = f"at least {human_bytes(least)}, or empty for no limit"
    return value


def _parse_form(form: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values (typed) and an error per field that cannot be read."""
    errors: dict[str, str] = {}
    raw_slots = (form_field(form, "slots") or "").strip()
    slots: int | None = None
    if raw_slots.isdigit() and 1 <= int(raw_slots) <= MAX_SLOTS:
        slots = int(raw_slots)
    else:
        errors["slots"] = f"a whole number from 1 to {MAX_SLOTS}"
    values = {
        "slots": slots,
        "rate_limit": _parse_size(
            form_field(form, "rate_limit") or "", "rate_limit", errors, MIN_RATE
        ),
        "daily_quota": _parse_size(form_field(form, "daily_quota") or "", "daily_quota", errors, 1),
        "helping_paused": form_field(form, "helping_paused") == "on",
    }
    return values, errors


async def save_settings(request: web.Request) -> web.StreamResponse:
    settings = _settings(request)
    form = await request.post()
    if form_field(form, "reset") == "all":
        settings.update(SettingsUpdate(reset=list(NAMES)))  # type: ignore[arg-type]
        raise web.HTTPSeeOther(f"{PREFIX}/settings?saved=1")
    values, errors = _parse_form(form)
    typed = {
        "slots": form_field(form, "slots") or "",
        "rate_limit": form_field(form, "rate_limit") or "",
        "daily_quota": form_field(form, "daily_quota") or "",
        "helping_paused": values["helping_paused"],
    }
    if errors:
        return _render(request, settings.view(), form=typed, errors=errors, status=400)
    changed = {n: v for n, v in values.items() if v != settings.value(n)}
    try:
        settings.update(SettingsUpdate.model_validate(changed))
    except ValidationError as exc:
        tied = {str(e["loc"][0]) if e["loc"] else "form": str(e["msg"]) for e in exc.errors()}
        return _render(request, settings.view(), form=typed, errors=tied, status=400)
    raise web.HTTPSeeOther(f"{PREFIX}/settings?saved=1")
