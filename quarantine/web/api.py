"""The JSON API under ``/api/v1``, with bearer tokens (``mugaika user token create NAME``).

Same rules as the UI: tenant scope (404 outside it), role permissions (403), a reason for
every release, errors as ``{"error": CODE, "detail": text}``. Tokens are sent as
``Authorization: Bearer mgk_…``; cookies are ignored here, so the API needs no CSRF token.

The contract lives in ``quarantine/web/models.py``: each route below names its query model and
its body model, the wrapper validates both before the handler runs, and
``GET /api/v1/openapi.json`` (OpenAPI 3.1) is generated from the same table and models.

=========  ==================  ===========================================================
status     error               when
=========  ==================  ===========================================================
400        INVALID_PARAMETER   a query parameter is unknown, repeated or has a bad value
                               (``since=yesterday``), or a path id is malformed
401        UNAUTHENTICATED     no valid bearer token
403        FORBIDDEN           the role may not do this (or the two-person rule applies)
404        NOT_FOUND           no such item or request in the caller's tenants
422        INVALID_REQUEST     the body is not JSON, not an object, or a field is unknown,
                               missing or invalid (the detail names each field)
=========  ==================  ===========================================================

Domain refusals keep their own codes (``USER_ERROR`` 400, ``RELEASE_REFUSED`` 409,
``RELEASE_FAILED`` 502); nothing answers with a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.logs import replace_control_chars
from gateway.yamlfile import dotted
from quarantine.errors import PermissionDenied, QuarantineError
from quarantine.release import check_reason, decide_request, release, request_release
from quarantine.sql import ItemQuery, parse_since
from quarantine.users import Actor
from quarantine.web.models import (
    AuditQuery,
    DecisionBody,
    DeleteQuery,
    ItemListQuery,
    NoQuery,
    ReleaseBody,
    RequestBody,
    RequestListQuery,
)

if TYPE_CHECKING:
    from quarantine.web.app import AdminApp

MAX_BODY = 64 * 1024
REF_TEMPLATE = "#/components/schemas/{model}"


class InvalidParameter(QuarantineError):
    """A query or path parameter the API cannot use."""

    code = "INVALID_PARAMETER"
    http_status = 400


class InvalidRequest(QuarantineError):
    """A request body that does not match its model."""

    code = "INVALID_REQUEST"
    http_status = 422


def _error(exc: QuarantineError) -> JSONResponse:
    return JSONResponse({"error": exc.code, "detail": str(exc)}, exc.http_status)


def _problem(error: Any) -> str:
    """One pydantic error as ``field: problem`` (the configuration files' wording)."""
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        problem = "unknown field"
    elif kind == "missing":
        problem = "required field is missing"
    else:
        problem = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        value = error.get("input")
        if isinstance(value, str | int | float | bool) and kind not in ("model_type", "dict_type"):
            shown = value[:60] + "…" if isinstance(value, str) and len(value) > 60 else value
            problem = f"{shown!r}: {problem}"
    return replace_control_chars(f"{dotted(error.get('loc', ()))}: {problem}")


def _describe(exc: ValidationError) -> str:
    return "; ".join(_problem(error) for error in exc.errors())


def parse_query(request: Request, model: type[BaseModel]) -> Any:
    """The query string as ``model``; empty values count as absent. Raises InvalidParameter."""
    values: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in values:
            raise InvalidParameter(f"{replace_control_chars(name)[:60]}: given more than once")
        if value != "":
            values[name] = value
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidParameter(_describe(exc)) from None


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as ``model``. Raises InvalidRequest naming every bad field."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidRequest(f"the body is larger than {MAX_BODY} bytes")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc)) from None


def _request_id(request: Request) -> int:
    text = request.path_params["request_id"]
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise InvalidParameter("request_id: request ids are positive integers")
    return int(text)


Handler = Callable[[Request, Actor, Any, Any], Awaitable[Any]]


@dataclass(frozen=True)
class ApiRoute:
    """One route of the API: what the wrapper checks and what the OpenAPI document says."""

    path: str
    method: str
    name: str
    handler: Handler
    summary: str
    permission: str = "view"
    query: type[BaseModel] = NoQuery
    body: type[BaseModel] | None = None
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})


def api_routes(admin: AdminApp) -> list[BaseRoute]:
    def endpoint(route: ApiRoute) -> Callable[[Request], Awaitable[Response]]:
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
                if not actor.can(route.permission):
                    raise PermissionDenied("your role may not do this")
                query = parse_query(request, route.query)
                body = await parse_body(request, route.body) if route.body else None
                result = await route.handler(request, actor, query, body)
            except QuarantineError as exc:
                return _error(exc)
            if isinstance(result, Response):
                return result
            return JSONResponse(result)

        return wrapped

    async def list_items(request: Request, actor: Actor, query: ItemListQuery, _: None) -> Any:
        page = await run_in_threadpool(
            admin.store.list,
            ItemQuery(
                status=query.status,
                kind=query.kind,
                tenant=query.tenant,
                since=parse_since(query.since) if query.since else None,
                search=query.search,
                limit=query.limit,
                offset=query.offset,
            ),
            actor.scope,
        )
        return {
            "items": [i.to_dict() for i in page.items],
            "total": page.total,
            # True: counting stopped at ``total``; there are more matches (SqlStore.count_cap).
            "total_capped": page.total_capped,
            "offset": page.offset,
            "limit": page.limit,
        }

    async def get_item(request: Request, actor: Actor, query: NoQuery, _: None) -> Any:
        item_id = request.path_params["item_id"]
        item = await run_in_threadpool(admin.store.get, item_id, actor.scope)
        history = await run_in_threadpool(admin.store.history, item_id)
        await run_in_threadpool(admin.store.audit, actor, "viewed", item_id, item.summary.tenant)
        return {**item.to_dict(), "history": [h.to_dict() for h in history]}

    async def release_item(
        request: Request, actor: Actor, query: NoQuery, body: ReleaseBody
    ) -> Any:
        result = await release(
            admin.store,
            admin.downstream,
            request.path_params["item_id"],
            actor,
            body.reason,
            target=body.target,
            to=list(body.to) if body.to else None,
            force=body.force,
            policy=admin.config.quarantine.release.originals,
        )
        return result.to_dict()

    async def request_item(
        request: Request, actor: Actor, query: NoQuery, body: RequestBody
    ) -> Any:
        request_id = await run_in_threadpool(
            request_release,
            admin.store,
            request.path_params["item_id"],
            actor,
            body.reason,
            list(body.to) if body.to else None,
            body.target,
        )
        return JSONResponse({"request": request_id}, 201)

    async def delete_item(request: Request, actor: Actor, query: DeleteQuery, _: None) -> Any:
        item_id = request.path_params["item_id"]
        reason = check_reason(query.reason or "deleted through the API")
        item = await run_in_threadpool(admin.store.get, item_id, actor.scope)
        await run_in_threadpool(admin.store.delete, item_id, actor, reason, actor.scope)
        await run_in_threadpool(
            admin.store.audit, actor, "deleted", item_id, item.summary.tenant, reason=reason
        )
        return {"id": item_id, "status": "deleted"}

    async def list_requests(
        request: Request, actor: Actor, query: RequestListQuery, _: None
    ) -> Any:
        status = None if query.status == "all" else query.status
        found = await run_in_threadpool(admin.store.requests, actor.scope, status)
        return [r.to_dict() for r in found]

    async def decide(request: Request, actor: Actor, query: NoQuery, body: DecisionBody) -> Any:
        request_id = _request_id(request)
        approve = request.url.path.endswith("/approve")
        result = await decide_request(
            admin.store,
            admin.downstream,
            request_id,
            actor,
            approve,
            body.reason,
            admin.config.requests,
        )
        return {
            "request": request_id,
            "decision": "approved" if approve else "refused",
            "release": result.to_dict() if result else None,
        }

    async def audit(request: Request, actor: Actor, query: AuditQuery, _: None) -> Any:
        entries, total = await run_in_threadpool(
            lambda: admin.store.audit_entries(
                actor.scope,
                item_id=query.item,
                actor=query.actor,
                action=query.action,
                limit=query.limit,
                offset=query.offset,
            )
        )
        return {"entries": [e.to_dict() for e in entries], "total": total}

    async def openapi(request: Request, actor: Actor, query: NoQuery, _: None) -> Any:
        return openapi_document(table)

    not_found = {404: "No such item or request in your tenants"}
    table = [
        ApiRoute(
            "/api/v1/items",
            "GET",
            "listItems",
            list_items,
            "List items, newest first",
            query=ItemListQuery,
            responses={200: "{items: [...], total, total_capped, offset, limit}"},
        ),
        ApiRoute(
            "/api/v1/items/{item_id}",
            "GET",
            "getItem",
            get_item,
            "One item with its report, headers and status history",
            responses={200: "The item", **not_found},
        ),
        ApiRoute(
            "/api/v1/items/{item_id}",
            "DELETE",
            "deleteItem",
            delete_item,
            "Delete an item's content (metadata, history and audit stay)",
            permission="delete",
            query=DeleteQuery,
            responses={200: "Deleted", **not_found, 409: "Being released or already gone"},
        ),
        ApiRoute(
            "/api/v1/items/{item_id}/release",
            "POST",
            "releaseItem",
            release_item,
            "Release the sanitized copy or the original through the downstream",
            body=ReleaseBody,
            responses={
                200: "Released: {id, target, recipients, refused, reply, queue_id}",
                **not_found,
                409: "Already released or being released",
                502: "The downstream refused or was unreachable; the item stays held",
            },
        ),
        ApiRoute(
            "/api/v1/items/{item_id}/requests",
            "POST",
            "requestRelease",
            request_item,
            "Request the release of an original (two-person rule)",
            permission="request-original",
            body=RequestBody,
            responses={201: "{request: id}", **not_found, 409: "A request is already pending"},
        ),
        ApiRoute(
            "/api/v1/requests",
            "GET",
            "listRequests",
            list_requests,
            "Release requests (default: pending)",
            query=RequestListQuery,
            responses={200: "A list of requests"},
        ),
        ApiRoute(
            "/api/v1/requests/{request_id}/approve",
            "POST",
            "approveRequest",
            decide,
            "Approve a request and release what it asks for",
            permission="approve",
            body=DecisionBody,
            responses={200: "{request, decision, release}", **not_found, 409: "Not pending"},
        ),
        ApiRoute(
            "/api/v1/requests/{request_id}/refuse",
            "POST",
            "refuseRequest",
            decide,
            "Refuse a request",
            permission="approve",
            body=DecisionBody,
            responses={200: "{request, decision}", **not_found, 409: "Not pending"},
        ),
        ApiRoute(
            "/api/v1/audit",
            "GET",
            "auditLog",
            audit,
            "The audit log, newest first",
            permission="audit",
            query=AuditQuery,
            responses={200: "{entries: [...], total}"},
        ),
        ApiRoute(
            "/api/v1/openapi.json",
            "GET",
            "openapi",
            openapi,
            "This document",
            responses={200: "OpenAPI 3.1"},
        ),
    ]
    return [Route(r.path, endpoint(r), methods=[r.method]) for r in table]


def _parameters(route: ApiRoute) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in ("item_id", "request_id"):
        if "{" + name + "}" in route.path:
            kind = "integer" if name == "request_id" else "string"
            out.append({"name": name, "in": "path", "required": True, "schema": {"type": kind}})
    schema = route.query.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "description")}
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        description = schema["properties"][name].get("description")
        if description:
            parameter["description"] = description
        out.append(parameter)
    return out


def openapi_document(routes: list[ApiRoute]) -> dict[str, Any]:
    """OpenAPI 3.1 for ``routes``, with request schemas from their pydantic models."""
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
        }
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        responses: dict[str, Any] = {
            str(code): {"description": text} for code, text in route.responses.items()
        }
        for code, text in (
            (400, "INVALID_PARAMETER (or USER_ERROR): a parameter or value the API cannot use"),
            (401, "UNAUTHENTICATED: no valid bearer token"),
            (403, "FORBIDDEN: your role may not do this"),
        ):
            responses.setdefault(str(code), {"description": text, "content": error})
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "parameters": _parameters(route),
            "responses": responses,
        }
        if route.body is not None:
            schema = route.body.model_json_schema(ref_template=REF_TEMPLATE)
            schemas.update(schema.pop("$defs", {}))
            schemas[route.body.__name__] = schema
            reference = {"$ref": REF_TEMPLATE.format(model=route.body.__name__)}
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": reference}},
            }
            responses["422"] = {
                "description": "INVALID_REQUEST: the body is not a JSON object, or a field is "
                "unknown, missing or invalid",
                "content": error,
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Mugaika quarantine API", "version": "1"},
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
