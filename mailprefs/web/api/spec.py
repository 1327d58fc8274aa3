"""Declared API routes: one decorator gives access control, body validation and the
route's entry in the OpenAPI 3.1 document, so the document cannot drift from the code.
The handler's docstring is its summary and description there; `Api.group` says once the
tag and roles an area's routes share.

Validation is pydantic's (strict types, unknown fields refused); the JSON Schemas in the
document are pydantic's too.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partialmethod, wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from mailprefs.domain.models import ApiKey
from mailprefs.domain.numbers import NON_FINITE_DETAIL, first_non_finite
from mailprefs.web.api.auth import Call, authenticate
from mailprefs.web.problems import problem

JSON_TYPES = ("application/json",)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


ERROR_TEXT = {
    400: "Malformed request (the body is not JSON)",
    401: "No valid API key",
    403: "The key's role may not do this",
    404: "Not found (or erased: the detail says so)",
    409: "Conflict with the current state",
    413: "Body too large",
    415: "Unsupported content type",
    422: "Invalid input; `errors` names each field",
    429: "Rate limited; see Retry-After",
    500: "Unexpected error",
    503: "Unavailable",
}


@dataclass
class Operation:
    rule: str
    method: str
    summary: str
    roles: tuple[str, ...] | None
    body: type[BaseModel] | None
    responses: dict[int, type[BaseModel] | None]
    errors: set[int]
    tag: str
    body_types: tuple[str, ...] = JSON_TYPES
    description: str = ""
    headers: list[dict[str, Any]] = field(default_factory=list)
    # OpenAPI links from a success response to operations that take its `id`.
    links: dict[str, str] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        return self.method + "_" + re.sub(r"[<>]", "", self.rule.strip("/").replace("/", "_"))

    @property
    def path(self) -> str:
        return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", self.rule)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"<(?:[a-z]+:)?([a-z_]+)>", self.rule)


# Pydantic names the branch of a union it tried in the error location ("str",
# "function-after[...]"); clients want the field's path only.
_BRANCH_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _field_path(loc: tuple[Any, ...]) -> str:
    parts = [
        str(part)
        for part in loc
        if isinstance(part, int) or (part not in _BRANCH_TAGS and "[" not in str(part))
    ]
    return ".".join(parts) or "body"


def validation_errors(exc: ValidationError) -> tuple[int, list[dict[str, str]]]:
    """Map pydantic's errors to ours, one per field; malformed JSON is a 400, else 422."""
    status = 422
    by_field: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        if error["type"] == "json_invalid":
            status = 400
        by_field.setdefault(_field_path(error["loc"]), error["msg"])
    return status, [{"field": f, "detail": d} for f, d in by_field.items()]


def docstring_text(handler: Callable[..., Any]) -> tuple[str, str]:
    """A handler's docstring as the operation's summary (its first paragraph) and
    description (the paragraphs after it, separated by a blank line). A paragraph's lines
    are joined by spaces, so the document reads as if each were written on one line."""
    paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(handler.__doc__ or ""))
    joined = [" ".join(line.strip() for line in p.splitlines()) for p in paragraphs]
    return joined[0], "\n\n".join(joined[1:])


class Routes:
    """The routes of one area: `routes.get(rule, responses=...)` and so on, with the
    area's tag and roles said once (a route may still give its own)."""

    def __init__(self, api: Api, tag: str, roles: tuple[str, ...] | None) -> None:
        self.api = api
        self.tag = tag
        self.roles = roles

    def route(self, method: str, rule: str, **options: Any) -> Callable[..., Any]:
        options.setdefault("tag", self.tag)
        options.setdefault("roles", self.roles)
        return self.api.route(rule, method, **options)

    get = partialmethod(route, "GET")
    post = partialmethod(route, "POST")
    patch = partialmethod(route, "PATCH")
    delete = partialmethod(route, "DELETE")


class Api:
    """The routes of one blueprint, and the document that describes them."""

    def __init__(self, blueprint: Blueprint) -> None:
        self.blueprint = blueprint
        self.operations: list[Operation] = []

    def route(
        self,
        rule: str,
        method: str,
        *,
        roles: tuple[str, ...] | None,
        responses: dict[int, type[BaseModel] | None],
        tag: str,
        summary: str = "",
        body: type[BaseModel] | None = None,
        errors: tuple[int, ...] = (),
        body_types: tuple[str, ...] = JSON_TYPES,
        description: str = "",
        headers: list[dict[str, Any]] | None = None,
        links: dict[str, str] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a route. Its summary and description are the handler's docstring
        (see `docstring_text`) unless given here."""

        def decorator(handler: Callable[..., Any]) -> Callable[..., Any]:
            doc_summary, doc_description = docstring_text(handler)
            operation = Operation(
                rule=rule,
                method=method.lower(),
                summary=summary or doc_summary,
                roles=roles,
                body=body,
                responses=responses,
                errors=set(errors),
                tag=tag,
                body_types=body_types,
                description=description or doc_description,
                headers=headers or [],
                links=links or {},
            )
            if not operation.summary:
                raise TypeError(f"the API route {handler.__name__} needs a docstring (summary)")
            if roles is not None:
                operation.errors |= {401, 403, 429}
            if body is not None or body_types != JSON_TYPES:
                operation.errors |= {400, 413, 415, 422}
            if operation.path_params:
                operation.errors.add(404)
            operation.errors.add(500)
            self.operations.append(operation)

            @wraps(handler)
            def view(**params: str) -> Response:
                if any("\x00" in value for value in params.values()):
                    return problem(404, "not found")  # ids never hold NUL
                key: ApiKey | None = None
                if roles is not None:
                    key = authenticate(roles)
                call = Call.current(key)
                if body is not None:
                    refused = _read_body(call, body, body_types)
                    if refused is not None:
                        return refused
                return _reply(handler(call, **params))

            self.blueprint.add_url_rule(rule, view_func=view, methods=[method.upper()])
            return view

        return decorator

    def group(self, tag: str, *, roles: tuple[str, ...] | None) -> Routes:
        """The routes of one area of the API, which share an OpenAPI tag and (mostly) the
        roles allowed."""
        return Routes(self, tag, roles)

    def document(self, *, title: str, version: str, topics: dict[str, list[str]]) -> dict[str, Any]:
        models = {Problem}
        for op in self.operations:
            models.update(m for m in op.responses.values() if m is not None)
            if op.body is not None:
                models.add(op.body)
        _, defs = models_json_schema(
            [
                (m, "validation" if _is_input(m, self.operations) else "serialization")
                for m in models
            ],
            ref_template="#/components/schemas/{model}",
        )
        schemas = defs.get("$defs", {})
        _restrict_topics(schemas, topics)
        paths: dict[str, dict[str, Any]] = {}
        for op in self.operations:
            paths.setdefault(self.blueprint.url_prefix + op.path, {})[op.method] = self._operation(
                op
            )
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
            },
        }

    def _operation(self, op: Operation) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {},
        }
        description = op.description
        if op.roles is not None:
            doc["security"] = [{"bearerAuth": []}]
            description = (description + "\n\n" if description else "") + (
                "Roles: " + ", ".join(op.roles)
            )
        else:
            doc["security"] = []
        if description:
            doc["description"] = description
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1, "maxLength": 64},
            }
            for name in op.path_params
        ] + op.headers
        if parameters:
            doc["parameters"] = parameters
        if op.body is not None:
            ref = {"$ref": f"#/components/schemas/{op.body.__name__}"}
            doc["requestBody"] = {
                "required": True,
                "content": {media: {"schema": ref} for media in op.body_types},
            }
        elif op.body_types != JSON_TYPES:
            doc["requestBody"] = {
                "required": True,
                "content": {media: {"schema": {}} for media in op.body_types},
            }
        for status, model in op.responses.items():
            entry: dict[str, Any] = {"description": "OK" if status < 300 else str(status)}
            if model is not None:
                entry["content"] = {
                    "application/json": {
                        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}
                    }
                }
            if op.links and 200 <= status < 300 and model is not None:
                entry["links"] = {
                    name: {"operationId": target, "parameters": {"public_id": "$response.body#/id"}}
                    for name, target in op.links.items()
                }
            doc["responses"][str(status)] = entry
        for status in sorted(op.errors):
            entry = {
                "description": ERROR_TEXT[status],
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
            if status == 429:
                entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
            doc["responses"][str(status)] = entry
        return doc


def _read_body(call: Call, body: type[BaseModel], body_types: tuple[str, ...]) -> Response | None:
    """Validate the request body into `call.body`; the problem answer if it is refused."""
    if not request.mimetype or request.mimetype not in body_types:
        return problem(415, f"send the body as {' or '.join(body_types)}")
    raw = request.get_data(cache=True)
    try:
        call.body = body.model_validate_json(raw or b"")
    except ValidationError as exc:
        status, errs = validation_errors(exc)
        detail = "the body is not valid JSON" if status == 400 else None
        return problem(status, detail or "invalid input", errors=errs)
    # Python's JSON (and pydantic's) reads NaN, Infinity and 1e400 as floats; they are
    # not JSON and must never be stored (finding 1).
    where = first_non_finite(call.body.model_dump(), "")
    if where is not None:
        return problem(422, "invalid input", errors=[{"field": where, "detail": NON_FINITE_DETAIL}])
    return None


def _is_input(model: type[BaseModel], operations: list[Operation]) -> bool:
    return any(op.body is model for op in operations)


def _restrict_topics(schemas: dict[str, Any], topics: dict[str, list[str]]) -> None:
    """Topic fields list the configured topics of their kind (`x-topic`) in the document."""
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            kind = prop.get("x-topic")
            if kind:
                prop.pop("pattern", None)
                prop["enum"] = topics[kind]


def _reply(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    status, payload = result
    if payload is None:
        return Response(status=status)
    if isinstance(payload, BaseModel):
        response = jsonify(payload.model_dump(mode="json"))
    else:
        response = jsonify(payload)
    response.status_code = status
    return response
