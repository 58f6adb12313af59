"""The dashboard's FastAPI app: HTML pages and the JSON endpoint behind each.

Mounted by the Airflow plugin at ``/customer-health`` on the api-server (see
``plugins/customer_health_dashboard.py``); ``create_app()`` also runs it alone (tests, bench).

==============================  ============================================  ==========================
Page                            JSON                                          Reads
==============================  ============================================  ==========================
``/``  portfolio overview       ``/api/portfolio``                            zone mix, ARR at risk
``/worklist``                   ``/api/worklist`` (CSV)                       a CSM's accounts by priority
``/trending``                   ``/api/trending`` (CSV)                       30-day declines/recoveries
``/accounts/{key}``             ``/api/accounts/{key}``                       one account, everything
``/accounts?q=``                ``/api/accounts?q=`` (CSV)                    search, score and zone
``/interventions``              ``/api/interventions`` (CSV)                  At Risk recovery by action
``/model``                      ``/api/model``                                versions, audit metrics
``/model/{version}/report``     -                                             the latest HTML audit
-                               ``POST /api/accounts/{key}/overrides``        a CSM override
-                               ``POST .../overrides/{id}/revoke``            revoking one, with why
==============================  ============================================  ==========================

Every page and endpoint takes ``?model_version=`` (default: the latest version with scores,
see ``queries.default_version``) and requires an Airflow login (``auth``). The endpoints marked
CSV also answer ``?format=csv``: the same rows as a download (``export``). Every response
carries the security headers of ``security`` (CSP, ``X-Frame-Options: SAMEORIGIN``, ``nosniff``,
``Referrer-Policy``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import Connection

from customer_health import settings
from customer_health.dashboard import charts, export, formatting, queries, shadow, tables, worklist
from customer_health.dashboard.auth import (
    CSRF_HEADER,
    DashboardUser,
    Forbidden,
    NotAuthenticated,
    authenticate,
    check_csrf,
    login_url,
)
from customer_health.dashboard.security import REPORT_POLICY, SecurityHeaders
from customer_health.scoring.overrides import MAX_OVERRIDE_DAYS
from customer_health.warehouse.engine import get_engine
from customer_health.warehouse.io import utcnow

HERE = Path(__file__).resolve().parent
T = TypeVar("T")

ModelVersion = Annotated[str | None, Query(max_length=40, description="model version; default: the latest with scores")]
Format = Annotated[Literal["json", "csv"], Query(alias="format", description="json, or csv: the same rows as a download")]


# --------------------------------------------------------------------------- plumbing
@contextmanager
def warehouse() -> Iterator[Connection]:
    """A read connection to the warehouse."""
    with get_engine().connect() as conn:
        yield conn


async def current_user(request: Request) -> DashboardUser:
    """The Airflow user of the request (401/redirect and 403 are raised as exceptions)."""
    return await authenticate(request)


User = Annotated[DashboardUser, Depends(current_user)]


class _TTLCache:
    """Results that only change with the next scoring run, kept a few minutes per process."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: dict[tuple, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget everything (tests; a deliberate refresh)."""
        with self._lock:
            self._items.clear()

    def get(self, key: tuple, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._items.get(key)
            if hit and now - hit[0] < self.seconds:
                return hit[1]
        value = compute()
        with self._lock:
            self._items = {k: v for k, v in self._items.items() if now - v[0] < self.seconds}
            self._items[key] = (now, value)
        return value


# The intervention analysis joins half a year of At Risk episodes (100k on a 100k-account
# portfolio) with their actions: a few hundred milliseconds, the dashboard's heaviest query.
# It is cached per (warehouse, version, as-of date, parameters) and kept warm by a background
# refresher in the api-server (see ``_keep_warm``); a new scoring date is a new key, so a new
# day is never served stale. (Action statuses change within the hour: the entry lives an hour.)
_interventions_cache = _TTLCache(3600)
WARM_EVERY_SECONDS = 300
_salesforce_cache = _TTLCache(60)
_owners_cache = _TTLCache(300)  # the worklist's owner picker: who owns accounts changes with an extraction


def clear_caches() -> None:
    """Forget cached intervention analyses, the Salesforce instance URL and the account owners."""
    _interventions_cache.clear()
    _salesforce_cache.clear()
    _owners_cache.clear()


def _salesforce_instance_url() -> str | None:
    """``instance_url`` from the extra of the ``health_salesforce`` Airflow connection, if any."""
    try:
        from airflow.models.connection import Connection as AirflowConnection

        conn = AirflowConnection.get_connection_from_secrets(settings.SALESFORCE_CONN_ID)
        extra = conn.extra_dejson or {}
    except Exception:  # noqa: BLE001 - no such connection, or no Airflow: no link
        return None
    url = extra.get("instance_url") or extra.get("extra__salesforce__instance_url")
    return url.rstrip("/") if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def salesforce_instance() -> str | None:
    """The Salesforce instance URL, looked up at most once a minute per process."""
    return _salesforce_cache.get(("instance",), _salesforce_instance_url)


def salesforce_account_url(account_key: str) -> str | None:
    """The account's record in Salesforce (Lightning), or None without an instance URL."""
    instance = salesforce_instance()
    return f"{instance}/lightning/r/Account/{account_key}/view" if instance else None


def _view(conn: Connection, model_version: str | None) -> queries.View | None:
    return queries.resolve_view(conn, model_version)


def _json(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(jsonable_encoder(data), status_code=status_code)


# --------------------------------------------------------------------------- templates
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(
    charts=charts, zone_colours=charts.ZONE_COLOURS, CSRF_HEADER=CSRF_HEADER, structured=tables.render
)


templates.env.filters.update(formatting.FILTERS)


def _page(request: Request, template: str, user: DashboardUser, view: queries.View | None, **context: Any) -> HTMLResponse:
    base = request.scope.get("root_path", "").rstrip("/")
    chosen = request.query_params.get("model_version")

    def link(path: str, **params: Any) -> str:
        if chosen:
            params.setdefault("model_version", chosen)
        query = urlencode({k: v for k, v in params.items() if v is not None and v != []}, doseq=True)
        return f"{base}{path}" + (f"?{query}" if query else "")

    return templates.TemplateResponse(
        request,
        template,
        {"user": user, "view": view, "base": base, "link": link, "chosen_version": chosen, **context},
    )


# --------------------------------------------------------------------------- the app
class OverrideRequest(BaseModel):
    """A CSM's override of an account's score, as the account page posts it.

    Strict JSON types: the score is a JSON integer (``true``, ``"55"`` and ``55.5`` are
    refused, never coerced to 1 or 55), the reason a string, ``replace`` a boolean. The expiry
    must be after today and at most ``overrides.MAX_OVERRIDE_DAYS`` ahead (checked by
    ``scoring.overrides.create_override``, the one writer).
    """

    model_config = ConfigDict(strict=True)

    score: int = Field(ge=0, le=100, description="the score to use instead of the model's, 0-100")
    reason: str = Field(min_length=3, max_length=2000, description="why, in words a colleague can read")
    expires_on: date = Field(description="the override lapses at the start of this day (UTC)")
    replace: bool = Field(default=False, description="revoke the account's current override first")


class RevokeRequest(BaseModel):
    """Why an override no longer holds, as the account page posts it."""

    model_config = ConfigDict(strict=True)

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)] = Field(
        description="why the override is revoked, in words a colleague can read"
    )


B = TypeVar("B", bound=BaseModel)


async def _json_body(request: Request, model: type[B]) -> B | JSONResponse:
    """The request's JSON body validated as ``model`` (JSON semantics, strict), or the error answer."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return _json({"detail": "send the body as application/json"}, status_code=415)
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as invalid:
        errors = invalid.errors(include_url=False, include_context=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            return _json({"detail": "the body is not valid JSON"}, status_code=400)
        return _json({"detail": errors}, status_code=422)


def _keep_warm(stop: threading.Event) -> None:
    """Compute the default intervention analysis whenever a new scoring date appears."""
    import logging

    log = logging.getLogger(__name__)
    while not stop.is_set():
        try:
            with warehouse() as conn:
                view = _view(conn, None)
                if view is not None:
                    _interventions(conn, view, 180, 60)
        except Exception:  # noqa: BLE001 - a warehouse hiccup must not kill the refresher
            log.warning("could not pre-compute the intervention analysis", exc_info=True)
        stop.wait(WARM_EVERY_SECONDS)


def _first_use() -> None:
    """Work a served app does once, off the request path: look the Salesforce connection up.

    The first connection lookup in a process sets up Airflow's ORM (seconds in a bare process),
    which would otherwise land on the first account page. It runs here, in the lifespan's
    background thread, never at import: an Airflow plugin that touches the metadata DB while
    Airflow imports it breaks Airflow's own session (DESIGN.md, "Nothing at import").
    """
    salesforce_instance()


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """In the api-server (which enters mounted apps' lifespans): run the cache refresher."""
    threading.Thread(target=_first_use, name="customer-health-first-use", daemon=True).start()
    stop = threading.Event()
    refresher = threading.Thread(target=_keep_warm, args=(stop,), name="customer-health-warm", daemon=True)
    refresher.start()
    try:
        yield
    finally:
        stop.set()


class DashboardApp(FastAPI):
    """The dashboard's FastAPI app, with the security headers outermost.

    ``SecurityHeaders`` wraps the whole middleware stack, Starlette's error middleware
    included, so even the 500 of an unhandled exception carries them.
    """

    def build_middleware_stack(self) -> Any:
        return SecurityHeaders(super().build_middleware_stack())


def create_app(*, warm_cache: bool = True) -> FastAPI:
    """The dashboard app (pages, JSON endpoints, static assets).

    ``warm_cache`` runs the intervention-analysis refresher while the app is served.
    """
    # Compile every page template now (Jinja caches them per process): the api-server pays
    # it at start-up, not each page's first visitor.
    for name in templates.env.list_templates(extensions=["html"]):
        templates.env.get_template(name)
    app = DashboardApp(
        title="Customer health dashboard",
        description="Portfolio health, trends, accounts, interventions and model audits; Airflow login required.",
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan if warm_cache else None,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return RedirectResponse(login_url(request), status_code=302)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(exc)}, status_code=403)
        return HTMLResponse(f"<h1>403 Forbidden</h1><p>{_escape(str(exc))}</p>", status_code=403)

    @app.exception_handler(queries.UnknownModelVersion)
    async def _unknown_version(request: Request, exc: queries.UnknownModelVersion) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return HTMLResponse(f"<h1>404 Not Found</h1><p>{_escape(str(exc))}</p>", status_code=404)

    @app.exception_handler(worklist.BadFilter)
    async def _bad_filter(request: Request, exc: worklist.BadFilter) -> Response:
        if _is_api(request):
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return HTMLResponse(f"<h1>422 Unprocessable</h1><p>{_escape(str(exc))}</p>", status_code=422)

    # ----------------------------------------------------------------------- overview
    @app.get("/api/portfolio")
    def portfolio_data(
        user: User,
        model_version: ModelVersion = None,
        points: Annotated[int, Query(ge=2, le=60)] = 14,
        step_days: Annotated[int, Query(ge=1, le=91)] = 28,
        segment: Annotated[str | None, Query(max_length=60)] = None,
        plan: Annotated[str | None, Query(max_length=40)] = None,
    ) -> JSONResponse:
        """Zone distribution today (overall, by segment and plan tier), ARR at risk, history."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            if view is None:
                return _json({"model_version": None, "detail": "no scores yet"})
            return _json(queries.portfolio(conn, view, points=points, step_days=step_days, segment=segment, plan=plan))

    @app.get("/", response_class=HTMLResponse)
    def portfolio_page(
        request: Request,
        user: User,
        model_version: ModelVersion = None,
        points: Annotated[int, Query(ge=2, le=60)] = 14,
        step_days: Annotated[int, Query(ge=1, le=91)] = 28,
        segment: Annotated[str | None, Query(max_length=60)] = None,
        plan: Annotated[str | None, Query(max_length=40)] = None,
    ) -> HTMLResponse:
        """The portfolio overview."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            data = queries.portfolio(conn, view, points=points, step_days=step_days, segment=segment, plan=plan) if view else None
        return _page(request, "overview.html", user, view, page="overview", data=data)

    # ----------------------------------------------------------------------- trending
    @app.get("/api/trending")
    def trending_data(
        request: Request,
        user: User,
        model_version: ModelVersion = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        fmt: Format = "json",
    ) -> Response:
        """The biggest 30-day declines and recoveries with drivers and explanation (``format=csv``:
        both lists in one file, with their direction and rank)."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            data = queries.trending(conn, view, limit=limit) if view else {"model_version": None, "declines": [], "recoveries": []}
        if fmt == "csv":
            return export.response(
                export.trending_columns(_account_url(request, model_version)), export.trending_rows(data),
                export.filename("trending", data["model_version"], data.get("as_of_date")),
            )  # fmt: skip
        return _json(data)

    @app.get("/trending", response_class=HTMLResponse)
    def trending_page(
        request: Request, user: User, model_version: ModelVersion = None, limit: Annotated[int, Query(ge=1, le=200)] = 20
    ) -> HTMLResponse:
        """Trending accounts."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            data = queries.trending(conn, view, limit=limit) if view else None
        return _page(request, "trending.html", user, view, page="trending", data=data, limit=limit)

    # ----------------------------------------------------------------------- worklist
    @app.get("/api/worklist")
    def worklist_data(
        request: Request,
        user: User,
        model_version: ModelVersion = None,
        owner: OwnerParam = None,
        zone: Zones = None,
        plan: Annotated[str | None, Query(max_length=40)] = None,
        segment: Annotated[str | None, Query(max_length=60)] = None,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, Query(ge=1, le=worklist.MAX_PER_PAGE)] = worklist.PER_PAGE,
        fmt: Format = "json",
    ) -> Response:
        """Accounts by priority (highest first) with score, zone, 30-day change, ARR, top driver
        and open action; by ``owner`` (a Salesforce User Id, ``me`` or ``all``; default: the
        logged-in user's accounts when their e-mail is a Salesforce User's, else all), ``zone``
        (repeatable), ``plan`` and ``segment``. ``total``, ``zone_counts`` and ``pages`` say how
        much there is; ``format=csv`` streams every row under the filters, not one page."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            if view is None:
                return _json({"model_version": None, "detail": "no scores yet", "total": 0, "accounts": []})
            filters, chosen, me = _worklist_filters(conn, view, user, owner, zone, plan, segment)
            url = _account_url(request, model_version)
            if fmt == "csv":
                return export.response(
                    export.worklist_columns(url), _streamed(lambda c: worklist.iter_worklist(c, view, filters)),
                    export.filename("worklist", _owner_label(chosen), *filters.zones, filters.plan, filters.segment,
                                    view.version, view.as_of),
                )  # fmt: skip
            data = worklist.worklist(conn, view, filters, page=page, per_page=per_page)
        for row in data["accounts"]:
            row["account_url"] = url(row["account_key"])
        return _json({**data, "filters": _filters_json(filters, chosen), "me": me.as_dict() if me else None})

    @app.get("/worklist", response_class=HTMLResponse)
    def worklist_page(
        request: Request,
        user: User,
        model_version: ModelVersion = None,
        owner: OwnerParam = None,
        zone: Zones = None,
        plan: Annotated[str | None, Query(max_length=40)] = None,
        segment: Annotated[str | None, Query(max_length=60)] = None,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        per_page: Annotated[int, Query(ge=1, le=worklist.MAX_PER_PAGE)] = worklist.PER_PAGE,
    ) -> HTMLResponse:
        """The CSM worklist: filters, one page of accounts by priority, pages, CSV download."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            if view is None:
                return _page(request, "worklist.html", user, view, page="worklist", data=None)
            filters, chosen, me = _worklist_filters(conn, view, user, owner, zone, plan, segment)
            data = worklist.worklist(conn, view, filters, page=page, per_page=per_page)
            segments = worklist.segments(conn, view)
            owners = _owners(conn)
        params = {"owner": chosen.owner_id if chosen else "all", "zone": list(filters.zones), "plan": filters.plan,
                  "segment": filters.segment, "per_page": per_page if per_page != worklist.PER_PAGE else None}  # fmt: skip
        return _page(
            request, "worklist.html", user, view, page="worklist", data=data, filters=filters, chosen=chosen, me=me,
            owners=owners, segments=segments, plans=sorted({queries._plan_of(s) for s in segments}), params=params,
            per_page=per_page, per_page_choices=sorted({25, 50, 100, 200, per_page}),
        )  # fmt: skip

    # ----------------------------------------------------------------------- accounts
    @app.get("/api/accounts")
    def account_search_data(
        request: Request,
        user: User,
        q: Annotated[str, Query(min_length=1, max_length=100)],
        model_version: ModelVersion = None,
        limit: Annotated[int, Query(ge=1, le=100)] = queries.SEARCH_LIMIT,
        fmt: Format = "json",
    ) -> Response:
        """Accounts whose key starts with ``q`` or whose name contains it, with their latest
        score and zone; ``total`` counts every match and ``truncated`` says the list stops at ``limit``
        (``format=csv``: every match, in the same order)."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            if fmt == "csv":
                return export.response(
                    export.search_columns(_account_url(request, model_version)),
                    _streamed(lambda c: queries.iter_search_accounts(c, q, view)),
                    export.filename("search", q, view.version if view else None, view.as_of if view else None),
                )  # fmt: skip
            found = queries.search_accounts(conn, q, view, limit=limit)
        return _json({"query": q, "model_version": view.version if view else None,
                      "as_of_date": view.as_of if view else None, **found})  # fmt: skip

    @app.get("/accounts", response_class=HTMLResponse)
    def account_search_page(
        request: Request, user: User, q: Annotated[str, Query(max_length=100)] = "", model_version: ModelVersion = None
    ) -> Response:
        """Account search; a single match opens the account."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            found = queries.search_accounts(conn, q, view)
        if found["total"] == 1 and len(found["accounts"]) == 1:
            base = request.scope.get("root_path", "").rstrip("/")
            suffix = f"?model_version={model_version}" if model_version else ""
            return RedirectResponse(f"{base}/accounts/{found['accounts'][0]['account_key']}{suffix}", status_code=303)
        return _page(request, "search.html", user, view, page="accounts", query=q, found=found)

    @app.get("/api/accounts/{account_key}")
    def account_data(
        user: User,
        account_key: str,
        model_version: ModelVersion = None,
        days: Annotated[int, Query(ge=7, le=1095)] = 365,
    ) -> JSONResponse:
        """One account: identity, score history, signals and drivers, overrides, actions."""
        with warehouse() as conn:
            detail = _account(conn, account_key, model_version, days)
        if detail is None:
            return _json({"detail": f"account {account_key} is not in the warehouse"}, status_code=404)
        return _json(detail)

    @app.get("/accounts/{account_key}", response_class=HTMLResponse)
    def account_page(
        request: Request,
        user: User,
        account_key: str,
        model_version: ModelVersion = None,
        days: Annotated[int, Query(ge=7, le=1095)] = 365,
    ) -> HTMLResponse:
        """The account page, with the override form for permitted users."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            detail = _account(conn, account_key, model_version, days, view=view)
        if detail is None:
            return HTMLResponse(
                f"<h1>404 Not Found</h1><p>account {_escape(account_key)} is not in the warehouse</p>", status_code=404
            )
        today = utcnow().date()
        return _page(
            request, "account.html", user, view, page="account", account=detail,
            default_expiry=today + timedelta(days=30), earliest_expiry=today + timedelta(days=1),
            latest_expiry=today + timedelta(days=MAX_OVERRIDE_DAYS), max_override_days=MAX_OVERRIDE_DAYS,
        )  # fmt: skip

    @app.post("/api/accounts/{account_key}/overrides", status_code=201)
    async def create_override_endpoint(request: Request, user: User, account_key: str) -> JSONResponse:
        """Record a CSM override (score, reason, expiry) as the logged-in user."""
        if not user.can_override:
            raise Forbidden(f"user {user.username!r} may not override health scores")
        check_csrf(request, user)
        body = await _json_body(request, OverrideRequest)
        if isinstance(body, JSONResponse):
            return body
        return _record_override(account_key, body, user)

    @app.post("/api/accounts/{account_key}/overrides/{override_id}/revoke")
    async def revoke_override_endpoint(request: Request, user: User, account_key: str, override_id: int) -> JSONResponse:
        """Revoke one of the account's overrides from now on, as the logged-in user, with why."""
        if not user.can_override:
            raise Forbidden(f"user {user.username!r} may not revoke health score overrides")
        check_csrf(request, user)
        body = await _json_body(request, RevokeRequest)
        if isinstance(body, JSONResponse):
            return body
        return _revoke_override(account_key, override_id, body, user)

    # ----------------------------------------------------------------------- interventions
    @app.get("/api/interventions")
    def interventions_data(
        user: User,
        model_version: ModelVersion = None,
        window_days: Annotated[int, Query(ge=30, le=730)] = 180,
        horizon_days: Annotated[int, Query(ge=7, le=180)] = 60,
        fmt: Format = "json",
    ) -> Response:
        """At Risk recovery rate, time to recover and outcomes per action type vs no action
        (``format=csv``: one row per action type, then the groups they are compared with)."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            if view is None:
                return _json({"model_version": None, "detail": "no scores yet"})
            data = _interventions(conn, view, window_days, horizon_days)
        if fmt == "csv":
            return export.response(
                export.intervention_columns(), export.intervention_rows(data),
                export.filename("interventions", f"{window_days}d", f"{horizon_days}d-horizon", view.version, view.as_of),
            )  # fmt: skip
        return _json(data)

    @app.get("/interventions", response_class=HTMLResponse)
    def interventions_page(
        request: Request,
        user: User,
        model_version: ModelVersion = None,
        window_days: Annotated[int, Query(ge=30, le=730)] = 180,
        horizon_days: Annotated[int, Query(ge=7, le=180)] = 60,
    ) -> HTMLResponse:
        """The interventions page."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            data = _interventions(conn, view, window_days, horizon_days) if view else None
        return _page(
            request, "interventions.html", user, view, page="interventions", data=data,
            window_days=window_days, horizon_days=horizon_days,
        )  # fmt: skip

    # ----------------------------------------------------------------------- shadow mode
    @app.get("/api/shadow")
    def shadow_data(
        user: User,
        model_version: ModelVersion = None,
        days: Annotated[int, Query(ge=1, le=365)] = shadow.DEFAULT_DAYS,
        action_type: Annotated[str | None, Query(max_length=80)] = None,
        fmt: Format = "json",
    ) -> Response:
        """What the shadow-mode action types would have sent (``format=csv``: every row)."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            if view is None:
                return _json({"model_version": None, "detail": "no scores yet"})
            data = shadow.shadow_actions(conn, view.as_of, days=days, action_type=action_type,
                                         limit=None if fmt == "csv" else shadow.PAGE_SIZE)
        if fmt == "csv":
            return export.response(shadow.columns(), data["rows"],
                                   export.filename("shadow", action_type, f"{days}d", view.as_of))
        return _json(data)

    @app.get("/shadow", response_class=HTMLResponse)
    def shadow_page(
        request: Request,
        user: User,
        model_version: ModelVersion = None,
        days: Annotated[int, Query(ge=1, le=365)] = shadow.DEFAULT_DAYS,
        action_type: Annotated[str | None, Query(max_length=80)] = None,
    ) -> HTMLResponse:
        """The shadow page: what would have been sent, before a type goes live."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            data = shadow.shadow_actions(conn, view.as_of, days=days, action_type=action_type) if view else None
        return _page(request, "shadow.html", user, view, page="shadow", data=data, days=days,
                     action_type=action_type)

    # ----------------------------------------------------------------------- model
    @app.get("/api/model")
    def model_data(user: User) -> JSONResponse:
        """Every model version: registry entry, scored dates, audit metrics, report."""
        with warehouse() as conn:
            view = _view(conn, None)
            return _json(_with_iterations(conn, queries.model_overview(conn, view), view))

    @app.get("/model", response_class=HTMLResponse)
    def model_page(request: Request, user: User, model_version: ModelVersion = None) -> HTMLResponse:
        """The model page."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            data = _with_iterations(conn, queries.model_overview(conn, view), view)
        return _page(request, "model.html", user, view, page="model", data=data)

    @app.get("/model/{version}/report")
    def model_report(user: User, version: str) -> Response:
        """The latest HTML audit report of ``version`` (404 when none is stored or the file is gone)."""
        with warehouse() as conn:
            path = queries.report_file(conn, _view(conn, None), version)
        if path is None:
            return HTMLResponse(f"<h1>404 Not Found</h1><p>no audit report for model {_escape(version)}</p>", status_code=404)
        # A stored, self-contained file: its inline stylesheet and data: images, no script.
        return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": REPORT_POLICY})

    _stakeholder_and_review_routes(app)
    return app


# --------------------------------------------------------------------------- rollups and reviews
ReviewMonth = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="a reviewed month, YYYY-MM; default: the latest")]
ReviewModel = Annotated[str | None, Query(max_length=40, description="the reviewed model version; default: any")]


_HOW_TO_REVIEW = (
    "trigger customer_health_monthly_review for the month after it (or run python -m customer_health.review "
    "--month YYYY-MM); a month without scores cannot be reviewed"
)


def _review_month(month: str | None) -> date | None:
    return date.fromisoformat(f"{month}-01") if month else None


def _stakeholder_and_review_routes(app: FastAPI) -> None:
    """The enterprise rollup (aggregate and stakeholder health) and the monthly reviews."""
    from customer_health import review as reviews
    from customer_health.dashboard import rollups

    @app.get("/api/accounts/{account_key}/rollup")
    def rollup_data(user: User, account_key: str, model_version: ModelVersion = None) -> JSONResponse:
        """A parent account's aggregate score, each child's score, and their people."""
        with warehouse() as conn:
            data = rollups.rollup(conn, _view(conn, model_version), account_key)
        if data is None:
            return _json({"detail": f"account {account_key} has no child accounts: it is not an enterprise parent"}, 404)
        return _json(data)

    @app.get("/accounts/{account_key}/rollup", response_class=HTMLResponse)
    def rollup_page(request: Request, user: User, account_key: str, model_version: ModelVersion = None) -> HTMLResponse:
        """The enterprise rollup page."""
        with warehouse() as conn:
            view = _view(conn, model_version)
            data = rollups.rollup(conn, view, account_key)
        if data is None:
            return HTMLResponse(f"<h1>404 Not Found</h1><p>account {_escape(account_key)} has no child accounts: "
                                "it is not an enterprise parent</p>", status_code=404)  # fmt: skip
        return _page(request, "rollup.html", user, view, page="account", rollup=data)

    @app.get("/api/reviews")
    def reviews_data(user: User, month: ReviewMonth = None, review_model: ReviewModel = None) -> JSONResponse:
        """Every stored monthly review, and the figures of one (the latest by default)."""
        with warehouse() as conn:
            listed = reviews.list_reviews(conn)
            shown = reviews.stored_review(conn, _review_month(month), review_model)
        if shown is None and (month or review_model):
            return _json({"detail": f"no review of {month or 'any month'} for {review_model or 'any model'}: {_HOW_TO_REVIEW}"}, 404)
        return _json({"reviews": listed, "shown": shown})

    @app.get("/reviews", response_class=HTMLResponse)
    def reviews_page(request: Request, user: User, month: ReviewMonth = None, review_model: ReviewModel = None) -> HTMLResponse:
        """The monthly reviews: the list, and one review (the latest by default) in full."""
        with warehouse() as conn:
            view = _view(conn, None)
            listed = reviews.list_reviews(conn)
            shown = reviews.stored_review(conn, _review_month(month), review_model)
        if shown is None and (month or review_model):
            return HTMLResponse(f"<h1>404 Not Found</h1><p>no review of {_escape(month or 'any month')}: {_HOW_TO_REVIEW}</p>",
                                status_code=404)  # fmt: skip
        points = reviews.chart_points(shown["figures"]) if shown else []
        return _page(request, "reviews.html", user, view, page="reviews", reviews=listed, shown=shown, shown_points=points)

    @app.get("/reviews/{month}/file")
    def review_file(user: User, month: Annotated[str, PathParam(pattern=r"^\d{4}-\d{2}$")], review_model: ReviewModel = None) -> Response:
        """A stored review's self-contained HTML file (404 when none is stored or the file is gone)."""
        with warehouse() as conn:
            shown = reviews.stored_review(conn, _review_month(month), review_model)
        path = queries._existing_file(shown["report_path"]) if shown else None
        if path is None:
            return HTMLResponse(f"<h1>404 Not Found</h1><p>no review file for {_escape(month)}</p>", status_code=404)
        # Self-contained: its inline stylesheet and SVG, no script (the audit report's policy).
        return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": REPORT_POLICY})


OwnerParam = Annotated[
    str | None,
    Query(pattern=r"^(all|me|[A-Za-z0-9]{15,18})$", description="a Salesforce User Id, me or all"),
]
Zones = Annotated[list[str] | None, Query(description="zones to show (repeatable); default: every zone")]


def _worklist_filters(
    conn: Connection, view: queries.View, user: DashboardUser, owner: str | None, zones: list[str] | None,
    plan: str | None, segment: str | None,
) -> tuple[worklist.Filters, worklist.Owner | None, worklist.Owner | None]:
    """The worklist's filters, the chosen owner (None: every owner) and the user's own
    Salesforce User (None when their e-mail is nobody's)."""
    me = worklist.salesforce_user_by_email(conn, user.email)
    if owner is None:
        owner = "me" if me is not None else "all"
    if owner == "me" and me is None:
        raise worklist.BadFilter(
            f"your Airflow login {user.username!r} has no e-mail of a Salesforce user"
            f"{f' ({user.email})' if user.email else ''}: choose an owner, or all"
        )
    chosen = None if owner == "all" else me if owner == "me" else worklist.owner(conn, owner)
    filters = worklist.Filters(
        owner_id=chosen.owner_id if chosen else None,
        zones=tuple(dict.fromkeys(z for z in zones or () if z)),
        plan=plan or None,
        segment=segment or None,
    )
    worklist.check_filters(view, filters)
    return filters, chosen, me


def _filters_json(filters: worklist.Filters, chosen: worklist.Owner | None) -> dict[str, Any]:
    return {"owner": chosen.as_dict() if chosen else None, "zones": list(filters.zones), "plan": filters.plan,
            "segment": filters.segment}  # fmt: skip


def _owner_label(chosen: worklist.Owner | None) -> str:
    return (chosen.name or chosen.owner_id) if chosen else "all-owners"


def _owners(conn: Connection) -> list[worklist.Owner]:
    """Every account owner, looked up at most every five minutes per process."""
    return _owners_cache.get((str(conn.engine.url), "owners"), lambda: worklist.owners(conn))


def _account_url(request: Request, model_version: str | None) -> Callable[[str], str]:
    """The address of an account's page (absolute: a CSV is opened outside the dashboard).

    The dashboard's own root comes from the scope's ``root_path`` (the api-server's mount at
    ``/customer-health``), as the pages' links do; ``request.base_url`` is the api-server's.
    """
    base = f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '').rstrip('/')}"
    suffix = f"?{urlencode({'model_version': model_version})}" if model_version else ""
    return lambda key: f"{base}/accounts/{quote(key, safe='')}{suffix}"


def _streamed(produce: Callable[[Connection], Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Rows produced on a connection of their own: a streamed response outlives its endpoint."""
    with warehouse() as conn:
        yield from produce(conn)


def _is_api(request: Request) -> bool:
    return request.url.path.removeprefix(request.scope.get("root_path", "")).startswith("/api/")


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _account(
    conn: Connection, account_key: str, model_version: str | None, days: int, view: queries.View | None = None
) -> dict[str, Any] | None:
    view = view or _view(conn, model_version)
    detail = queries.account_detail(conn, view, account_key, days=days)
    if detail is not None:
        from customer_health.sources.mapping import active_mapping

        # A company without a CRM keys its accounts on Stripe customers or product accounts: there
        # is no Salesforce record to open, whatever connections exist.
        detail["identity_anchor"] = anchor = active_mapping().identity_anchor
        detail["salesforce_url"] = salesforce_account_url(account_key) if anchor == "salesforce" else None
        _with_stakeholders(conn, detail, view)
    return detail


def _with_iterations(conn: Connection, data: dict[str, Any], view: queries.View | None) -> dict[str, Any]:
    """The model iteration log (weight changes, accuracy, business impact) beside the versions."""
    from customer_health.validation.episodes import DEFAULT_HORIZON_DAYS
    from customer_health.validation.iterations import CAVEATS, iteration_log, stored_churn

    churn = stored_churn(conn)
    as_of = view.as_of if view is not None else utcnow().date()
    data["iterations"] = iteration_log(conn, as_of, churn if len(churn) else None)
    data["iteration_caveats"] = list(CAVEATS)
    data["iteration_horizon_days"] = DEFAULT_HORIZON_DAYS
    return data


def _with_stakeholders(conn: Connection, detail: dict[str, Any], view: queries.View | None) -> None:
    """The account's people (stakeholder health, beside the score) and its enterprise rollup."""
    from customer_health.dashboard.rollups import rollup_key
    from customer_health.stakeholders import account_stakeholders

    key = detail["account_key"]
    as_of = view.as_of if view is not None else utcnow().date()
    detail["stakeholders"] = account_stakeholders(conn, key, as_of).page()
    detail["rollup_key"] = rollup_key(conn, key)


def _interventions(conn: Connection, view: queries.View, window_days: int, horizon_days: int) -> dict[str, Any]:
    key = (str(conn.engine.url), view.version, view.as_of, window_days, horizon_days)
    return _interventions_cache.get(
        key, lambda: queries.interventions(conn, view, window_days=window_days, horizon_days=horizon_days)
    )


def _revoke_override(account_key: str, override_id: int, body: RevokeRequest, user: DashboardUser) -> JSONResponse:
    """Revoke through the scoring package (the row is stamped, the reason audited)."""
    from customer_health.scoring.overrides import OverrideError, revoke_override

    try:
        revocation = revoke_override(
            get_engine(), override_id, user.username, reason=body.reason, account_key=account_key
        )
    except OverrideError as exc:
        missing = "does not exist" in str(exc)
        return _json({"detail": str(exc)}, status_code=404 if missing else 409)
    return _json(
        {"override_id": revocation.override_id, "account_key": revocation.account_key, "revoked_at": revocation.revoked_at,
         "revoked_by": revocation.revoked_by, "reason": revocation.reason}
    )  # fmt: skip


def _record_override(account_key: str, body: OverrideRequest, user: DashboardUser) -> JSONResponse:
    """Write the override through the scoring package (audited: new rows, never edited in place)."""
    from customer_health.scoring.overrides import OverrideError, create_override

    engine = get_engine()
    with engine.connect() as conn:
        if not queries.account_known(conn, account_key):
            return _json({"detail": f"account {account_key} is not in the warehouse"}, status_code=404)
    try:
        override_id = create_override(
            engine,
            account_key,
            body.score,
            body.reason,
            created_by=user.username,
            expires_at=datetime.combine(body.expires_on, clock.min),
            replace=body.replace,
        )
    except OverrideError as exc:
        conflict = "already has override" in str(exc)
        return _json({"detail": str(exc)}, status_code=409 if conflict else 422)
    return _json(
        {"override_id": override_id, "account_key": account_key, "score": body.score, "created_by": user.username,
         "expires_at": datetime.combine(body.expires_on, clock.min)},
        status_code=201,
    )


app = create_app()
