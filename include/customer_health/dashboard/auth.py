"""Who is asking: the Airflow UI's own login, reused by the dashboard.

Authentication. The dashboard runs inside the Airflow api-server, so it accepts exactly what
the Airflow UI and REST API accept: the JWT issued by the configured auth manager, either in
an ``Authorization: Bearer`` header (API clients) or in the ``_token`` cookie the Airflow UI
keeps after login (the browser, including the dashboard's iframe in the Airflow UI). The token
is verified by the auth manager itself (signature, expiry, revocation on logout). No valid
token: the JSON endpoints answer 401, the HTML pages redirect to the Airflow login page with
``next`` pointing back. A valid user the auth manager refuses the dashboard view gets 403.

Authorisation. Reading needs the auth manager's permission on the custom view
``Customer Health``. Entering or revoking a CSM score override needs ``POST`` on ``Customer
Health Overrides`` (``is_authorized_custom_view``). With the FAB auth manager (production,
``docker-compose.yaml``) these are FAB permissions - ``can_read`` on the resource ``Customer
Health`` and ``can_create`` on ``Customer Health Overrides`` (FAB maps GET to ``can_read`` and
POST to ``can_create``) - which ``register_fab_roles`` creates, with two roles:

* ``Customer Health CSM``: read the dashboard, enter and revoke overrides, and see the
  dashboard's entry in the Airflow menu (``can_read`` on ``Plugins``, ``menu_access`` on
  ``Browse``); nothing else of Airflow (no DAGs, runs, connections, variables).
* ``Customer Health Viewer``: read the dashboard only.

FAB's Admin role holds every permission, these included. The simple auth manager (``make
airflow``, the demo, tests) grants every custom view to every role, so it cannot express a
write permission for a plugin: with it, only its ``ADMIN`` role may override.

Who is who in Salesforce. The worklist opens on the user's own accounts when the user's e-mail
(``email_of``: the auth manager's e-mail field, else a username that is an e-mail address) is the
e-mail of a Salesforce User (``raw_sf_user``, case-insensitive); otherwise it shows every owner
and the user picks one.

CSRF. Cookie-authenticated writes are the CSRF risk (a bearer header is never added by a
browser on its own). The override endpoint accepts only JSON, and with the cookie it also
requires (1) an ``Origin`` (or ``Referer``) header equal to the dashboard's own origin and (2)
an ``X-CSRF-Token`` header equal to an HMAC of the session's JWT, which the account page embeds
and only same-origin script can read. A cross-site form can set neither header, and a
cross-site ``fetch`` with them is stopped by the browser's CORS preflight.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

DASHBOARD_RESOURCE = "Customer Health"
OVERRIDE_RESOURCE = "Customer Health Overrides"
CSRF_HEADER = "X-CSRF-Token"
TOKEN_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class NotAuthenticated(Exception):
    """No valid Airflow login on the request."""


class Forbidden(Exception):
    """Logged in, but not allowed to do this."""


@dataclass(frozen=True)
class DashboardUser:
    """The Airflow user behind a request, as the dashboard needs it."""

    username: str
    can_override: bool
    token: str
    via_cookie: bool
    email: str | None = None  # the worklist's "my accounts": the Salesforce User with this e-mail

    @property
    def csrf_token(self) -> str:
        """The override form's CSRF token: bound to this login session's JWT."""
        return hmac.new(self.token.encode(), b"customer-health override " + self.username.encode(), hashlib.sha256).hexdigest()


def auth_manager() -> Any:
    """The api-server's auth manager (initialized here when running outside the api-server)."""
    from airflow.api_fastapi.app import get_auth_manager, init_auth_manager

    try:
        return get_auth_manager()
    except RuntimeError:
        # Tests and benchmarks run the app alone: initialize it as the api-server does.
        return init_auth_manager()


def presented_token(request: Request) -> tuple[str | None, bool]:
    """The JWT on the request and whether it came from the cookie (header wins, as in Airflow)."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), False
    cookie = request.cookies.get(TOKEN_COOKIE)
    return (cookie, True) if cookie else (None, False)


async def authenticate(request: Request) -> DashboardUser:
    """The Airflow user of ``request``; raises ``NotAuthenticated`` or ``Forbidden``."""
    from jwt import InvalidTokenError

    token, via_cookie = presented_token(request)
    if not token:
        raise NotAuthenticated("no Airflow login: sign in to Airflow first")
    manager = auth_manager()
    try:
        user = await manager.get_user_from_token(token)
    except InvalidTokenError as exc:
        raise NotAuthenticated(f"the Airflow login is not valid any more ({exc}); sign in again") from exc
    if not manager.is_authorized_custom_view(method="GET", resource_name=DASHBOARD_RESOURCE, user=user):
        raise Forbidden(f"user {user.get_name()!r} may not view {DASHBOARD_RESOURCE}")
    return DashboardUser(
        username=user.get_name(),
        can_override=may_override(manager, user),
        token=token,
        via_cookie=via_cookie,
        email=email_of(user),
    )


def email_of(user: Any) -> str | None:
    """The e-mail address of an Airflow user, if the auth manager knows one.

    FAB users carry ``email``; other auth managers' users may not, and their username is used
    when it is an e-mail address (single sign-on logins often are). The worklist maps it to
    the Salesforce User with that e-mail to preselect "my accounts".
    """
    for candidate in (getattr(user, "email", None), getattr(user, "username", None), _name(user)):
        if isinstance(candidate, str) and "@" in candidate.strip()[1:-1]:
            return candidate.strip()
    return None


def _name(user: Any) -> str | None:
    try:
        return user.get_name()
    except Exception:  # noqa: BLE001 - a user object without a name: no e-mail from it
        return None


def may_override(manager: Any, user: Any) -> bool:
    """Whether ``user`` may enter a score override (see the module docstring)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    if isinstance(manager, SimpleAuthManager):
        return str(getattr(user, "role", "") or "").upper() == "ADMIN"
    return bool(manager.is_authorized_custom_view(method="POST", resource_name=OVERRIDE_RESOURCE, user=user))


# FAB's names for the dashboard's permissions: (action, resource). GET is can_read, POST can_create.
FAB_READ_DASHBOARD = ("can_read", DASHBOARD_RESOURCE)
FAB_OVERRIDE = ("can_create", OVERRIDE_RESOURCE)
CSM_ROLE = "Customer Health CSM"
VIEWER_ROLE = "Customer Health Viewer"
FAB_ROLES: dict[str, tuple[tuple[str, str], ...]] = {
    CSM_ROLE: (FAB_READ_DASHBOARD, FAB_OVERRIDE, ("can_read", "Plugins"), ("menu_access", "Browse")),
    VIEWER_ROLE: (FAB_READ_DASHBOARD,),
}


def register_fab_roles() -> dict[str, list[str]]:
    """Create the dashboard's FAB resources, permissions and roles; idempotent.

    Run once per deployment after ``airflow db migrate`` (the compose file's ``airflow-init``
    does), with ``[core] auth_manager`` set to FAB's. A role created here gets exactly the
    permissions of ``FAB_ROLES``; a role that exists already only gains the ones it lacks, so
    what an admin changed in the UI stays. The Admin role gets the dashboard's permissions too.
    Returns each role's permissions after the run, as ``"action on resource"``.
    """
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        wanted = {**FAB_ROLES, sm.auth_role_admin: (FAB_READ_DASHBOARD, FAB_OVERRIDE)}
        result = {}
        for role_name, perms in wanted.items():
            role = sm.find_role(role_name) or sm.add_role(role_name)
            for action, resource in perms:
                sm.create_resource(resource)
                perm = sm.get_permission(action, resource) or sm.create_permission(action, resource)
                if perm is None:
                    raise RuntimeError(
                        f"FAB has no action {action!r}: is [core] auth_manager the FAB auth manager, "
                        "and has `airflow db migrate` run?"
                    )
                sm.add_permission_to_role(role, perm)
            result[role_name] = sorted(f"{p.action.name} on {p.resource.name}" for p in sm.find_role(role_name).permissions)
    return result


def login_url(request: Request) -> str:
    """The Airflow login page, coming back to this page afterwards."""
    return auth_manager().get_url_login(next_url=str(request.url))


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None


def check_csrf(request: Request, user: DashboardUser) -> None:
    """Refuse a cookie-authenticated write that did not come from the dashboard's own page."""
    if not user.via_cookie:
        return
    sent_from = request.headers.get("origin") or _origin(request.headers.get("referer", "")) or ""
    allowed = {_origin(str(request.base_url))}
    try:
        from airflow.configuration import conf

        allowed.add(_origin(conf.get("api", "base_url", fallback="") or ""))
    except Exception:  # noqa: BLE001 - no Airflow configuration: the request's own origin only
        pass
    if sent_from.lower() not in allowed - {None}:
        raise Forbidden(f"cross-origin request refused (Origin {sent_from or 'missing'})")
    sent_token = request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent_token, user.csrf_token):
        raise Forbidden(f"missing or stale {CSRF_HEADER} header: reload the account page and try again")
