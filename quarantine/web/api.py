"""The JSON API under ``/api/v1``, with bearer tokens (``mugaika user token create NAME``).

Same rules as the UI: tenant scope (404 outside it), role permissions (403), a reason for
every release, errors as ``{"error": CODE, "detail": text}``. Tokens are sent as
``Authorization: Bearer mgk_…``; cookies are ignored here, so the API needs no CSRF token.
``GET /api/v1/openapi.json`` describes every route (OpenAPI 3.1, from the docstrings below).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from quarantine.cli import parse_since
from quarantine.errors import PermissionDenied, QuarantineError, UserError
from quarantine.release import decide_request, release, request_release
from quarantine.sql import ItemQuery
from quarantine.users import Actor

if TYPE_CHECKING:
    from quarantine.web.app import AdminApp

MAX_BODY = 64 * 1024

schemas = SchemaGenerator(
    {
        "openapi": "3.1.0",
        "info": {"title": "Mugaika quarantine API", "version": "1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
)


def _error(exc: QuarantineError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "detail": str(exc)}, exc.http_status)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise UserError("request body too large")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UserError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise UserError("the body must be a JSON object")
    return data


def _str_list(value: Any, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise UserError(f"{name} must be a string or a list of strings")


def api_routes(admin: AdminApp) -> list[BaseRoute]:
    def endpoint(
        handler: Callable[[Request, Actor], Awaitable[Any]], permission: str = "view"
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            user = None
            if scheme.lower() == "bearer" and token.strip():
                user = await run_in_threadpool(admin.users.user_for_token, token.strip())
            if user is None:
                return JSONResponse(
                    {"error": "UNAUTHENTICATED", "detail": "a valid bearer token is required"},
                    401,
                    headers={"WWW-Authenticate": 'Bearer realm="mugaika"'},
                )
            actor = user.actor(admin.remote(request))
            try:
                if not actor.can(permission):
                    raise PermissionDenied("your role may not do this")
                result = await handler(request, actor)
            except QuarantineError as exc:
                return _error(exc)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        wrapped.__doc__ = handler.__doc__
        return wrapped

    async def list_items(request: Request, actor: Actor) -> Any:
        """
        summary: List items, newest first
        parameters:
          - {name: status, in: query, schema: {type: string}}
          - {name: kind, in: query, schema: {type: string}}
          - {name: tenant, in: query, schema: {type: string}}
          - {name: since, in: query, schema: {type: string}, description: "ISO date or 7d"}
          - {name: search, in: query, schema: {type: string}}
          - {name: limit, in: query, schema: {type: integer, default: 50, maximum: 1000}}
          - {name: offset, in: query, schema: {type: integer, default: 0}}
        responses:
          200: {description: "{items: [...], total, offset, limit}"}
        """
        params = request.query_params
        try:
            since = parse_since(params["since"]) if params.get("since") else None
            limit = int(params.get("limit") or 50)
            offset = int(params.get("offset") or 0)
        except (ValueError, TypeError) as exc:
            raise UserError(str(exc)) from None
        page = await run_in_threadpool(
            admin.store.list,
            ItemQuery(
                status=params.get("status") or None,
                kind=params.get("kind") or None,
                tenant=params.get("tenant") or None,
                since=since,
                search=params.get("search") or None,
                limit=limit,
                offset=offset,
            ),
            actor.scope,
        )
        return {
            "items": [i.to_dict() for i in page.items],
            "total": page.total,
            "offset": page.offset,
            "limit": page.limit,
        }

    async def get_item(request: Request, actor: Actor) -> Any:
        """
        summary: One item with its report, headers and status history
        responses:
          200: {description: the item}
          404: {description: no such item in your tenants}
        """
        item_id = request.path_params["item_id"]
        item = await run_in_threadpool(admin.store.get, item_id, actor.scope)
        history = await run_in_threadpool(admin.store.history, item_id)
        await run_in_threadpool(admin.store.audit, actor, "viewed", item_id, item.summary.tenant)
        return {**item.to_dict(), "history": [h.to_dict() for h in history]}

    async def release_item(request: Request, actor: Actor) -> Any:
        """
        summary: Release an item through the downstream
        requestBody:
          content:
            application/json:
              schema:
                type: object
                required: [reason]
                properties:
                  reason: {type: string}
                  to: {type: array, items: {type: string}}
                  sanitized: {type: boolean}
                  force: {type: boolean}
        responses:
          200: {description: released}
          403: {description: role or two-person rule}
          409: {description: already released or being released}
          502: {description: the downstream refused; the item stays held}
        """
        body = await _body(request)
        result = await release(
            admin.store,
            admin.downstream,
            request.path_params["item_id"],
            actor,
            str(body.get("reason") or ""),
            to=_str_list(body.get("to"), "to"),
            sanitized=body.get("sanitized") is True,
            force=body.get("force") is True,
            policy=admin.config.quarantine.release.originals,
        )
        return result.to_dict()

    async def request_item(request: Request, actor: Actor) -> Any:
        """
        summary: Request the release of an original (two-person rule)
        requestBody:
          content:
            application/json:
              schema:
                type: object
                required: [reason]
                properties:
                  reason: {type: string}
                  to: {type: array, items: {type: string}}
                  sanitized: {type: boolean}
        responses:
          201: {description: "{request: id}"}
        """
        body = await _body(request)
        request_id = await run_in_threadpool(
            request_release,
            admin.store,
            request.path_params["item_id"],
            actor,
            str(body.get("reason") or ""),
            _str_list(body.get("to"), "to"),
            body.get("sanitized") is True,
        )
        return JSONResponse({"request": request_id}, 201)

    async def delete_item(request: Request, actor: Actor) -> Any:
        """
        summary: Delete an item's content (metadata and history stay)
        responses:
          200: {description: deleted}
        """
        from quarantine.release import check_reason

        item_id = request.path_params["item_id"]
        reason = check_reason(request.query_params.get("reason") or "deleted through the API")
        item = await run_in_threadpool(admin.store.get, item_id, actor.scope)
        await run_in_threadpool(admin.store.delete, item_id, actor, reason, actor.scope)
        await run_in_threadpool(
            admin.store.audit, actor, "deleted", item_id, item.summary.tenant, reason=reason
        )
        return {"id": item_id, "status": "deleted"}

    async def list_requests(request: Request, actor: Actor) -> Any:
        """
        summary: Release requests (default pending)
        parameters:
          - {name: status, in: query, schema: {type: string}}
        responses:
          200: {description: a list of requests}
        """
        status = request.query_params.get("status", "pending")
        found = await run_in_threadpool(admin.store.requests, actor.scope, status or None)
        return [r.to_dict() for r in found]

    async def decide(request: Request, actor: Actor) -> Any:
        """
        summary: Approve (and release) or refuse a request
        requestBody:
          content:
            application/json:
              schema: {type: object, required: [reason], properties: {reason: {type: string}}}
        responses:
          200: {description: decided}
        """
        body = await _body(request)
        try:
            request_id = int(request.path_params["request_id"])
        except ValueError:
            raise UserError("request ids are integers") from None
        approve = request.url.path.endswith("/approve")
        result = await decide_request(
            admin.store, admin.downstream, request_id, actor, approve, str(body.get("reason") or "")
        )
        return {
            "request": request_id,
            "decision": "approved" if approve else "refused",
            "release": result.to_dict() if result else None,
        }

    async def audit(request: Request, actor: Actor) -> Any:
        """
        summary: The audit log, newest first
        parameters:
          - {name: item, in: query, schema: {type: string}}
          - {name: actor, in: query, schema: {type: string}}
          - {name: action, in: query, schema: {type: string}}
          - {name: limit, in: query, schema: {type: integer}}
          - {name: offset, in: query, schema: {type: integer}}
        responses:
          200: {description: "{entries: [...], total}"}
        """
        params = request.query_params
        try:
            limit = int(params.get("limit") or 100)
            offset = int(params.get("offset") or 0)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        entries, total = await run_in_threadpool(
            lambda: admin.store.audit_entries(
                actor.scope,
                item_id=params.get("item") or None,
                actor=params.get("actor") or None,
                action=params.get("action") or None,
                limit=limit,
                offset=offset,
            )
        )
        return {"entries": [e.to_dict() for e in entries], "total": total}

    routes: list[BaseRoute] = [
        Route("/api/v1/items", endpoint(list_items), methods=["GET"]),
        Route("/api/v1/items/{item_id}", endpoint(get_item), methods=["GET"]),
        Route("/api/v1/items/{item_id}", endpoint(delete_item, "delete"), methods=["DELETE"]),
        Route("/api/v1/items/{item_id}/release", endpoint(release_item), methods=["POST"]),
        Route(
            "/api/v1/items/{item_id}/requests",
            endpoint(request_item, "request-original"),
            methods=["POST"],
        ),
        Route("/api/v1/requests", endpoint(list_requests), methods=["GET"]),
        Route(
            "/api/v1/requests/{request_id}/approve", endpoint(decide, "approve"), methods=["POST"]
        ),
        Route(
            "/api/v1/requests/{request_id}/refuse", endpoint(decide, "approve"), methods=["POST"]
        ),
        Route("/api/v1/audit", endpoint(audit, "audit"), methods=["GET"]),
    ]

    async def openapi(request: Request, actor: Actor) -> Any:
        """
        summary: This document
        responses:
          200: {description: OpenAPI 3.1}
        """
        return schemas.get_schema(routes=routes)

    routes.append(Route("/api/v1/openapi.json", endpoint(openapi), methods=["GET"]))
    return routes
