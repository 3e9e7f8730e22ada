"""Schemathesis hooks of `.ci/contract` (loaded with SCHEMATHESIS_HOOKS=st_hooks).

Credentials (a schemathesis auth provider, so that `ignored_auth` knows them, strips them and
replays the request without them or with broken ones):

* Every operation that accepts an API key gets the fuzz administrator's key
  (`X-API-Key`, scopes: admin and all others). No fuzzed logout, session or key revocation can
  end it: those act on a person's login only (an API key gets a 4xx there).
* The operations that refuse API keys (a person's login only: `/auth/logout`, `/auth/mfa/*`,
  `/auth/sessions`, `/api/v1/api-keys`, …) get a bearer token of the same administrator, from
  `POST /auth/login`. A fuzzed logout can revoke it: schemathesis then sees a 401, logs in again
  and replays the request (its reactive re-authentication, `retry_on` 401).
* Public operations get nothing.

The key is not passed with `--header`: a presented key decides alone (src/auth/principal.rs), so
a key sent to every operation would turn every person-only operation into a 403.

Guards that keep the run meaningful without excluding operations from it:

* The fuzzer's own identity is out of reach. Schemathesis learns ids from responses (stateful
  links, `Location` headers, `GET /api/v1/admin/users`) and would, sooner or later, send
  `PATCH /api/v1/admin/users/{id}` `{"active": false}` or `{"role": "user"}` to the owner of the
  key it authenticates with: every later request would be a 401/403 and the rest of the run would
  test nothing. A path parameter equal to a protected id (`KYROS_CONTRACT_PROTECTED_IDS`: the
  fuzz administrator's user id and key id) is replaced with a fresh random UUID (an unknown id:
  the operation still runs, to its 404).
* Server-sent event streams end only when the client leaves. The service's `?once=true` makes
  them send the backlog and close, so they are forced to `once=true` and fuzzed like any other
  GET (their other parameters and `Last-Event-ID` still vary).

And one workaround: CPython 3.11's `ast.parse` is not safe to call from two threads at once
(python/cpython#106905: "SystemError: AST constructor recursion depth mismatch"), and Hypothesis
parses sources to describe strategies while schemathesis' workers build them. Calls are
serialized with a lock (they happen while strategies are built, not per request).

Environment: KYROS_CONTRACT_BASE_URL, KYROS_CONTRACT_ADMIN_KEY, KYROS_CONTRACT_ADMIN_USER,
KYROS_CONTRACT_ADMIN_PASSWORD, KYROS_CONTRACT_PROTECTED_IDS.
"""

from __future__ import annotations

import ast
import os
import threading
import uuid
from typing import Any

import requests
import schemathesis

_ast_parse = ast.parse
_ast_lock = threading.Lock()


def _serialized_parse(*args: Any, **kwargs: Any) -> Any:
    with _ast_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _serialized_parse

BASE_URL = os.environ.get("KYROS_CONTRACT_BASE_URL", "").rstrip("/")
ADMIN_KEY = os.environ.get("KYROS_CONTRACT_ADMIN_KEY", "")
ADMIN_USER = os.environ.get("KYROS_CONTRACT_ADMIN_USER", "")
ADMIN_PASSWORD = os.environ.get("KYROS_CONTRACT_ADMIN_PASSWORD", "")
PROTECTED_IDS = {
    v.strip().lower()
    for v in os.environ.get("KYROS_CONTRACT_PROTECTED_IDS", "").split(",")
    if v.strip()
}

# Names of the security schemes in the document (src/http/api.rs).
API_KEY_SCHEME = "apiKey"
BEARER_SCHEME = "bearerAuth"

# Fallback when an SSE operation does not (yet) document `text/event-stream`.
SSE_PATHS = {"/api/v1/events/tail", "/api/v1/orchestrator/events/stream"}


def _raw(case: Any) -> dict:
    return getattr(getattr(case.operation, "definition", None), "raw", None) or {}


def credential_kind(case: Any, _ctx: Any = None) -> str:
    """`apiKey`, `bearer` or `none`, from the operation's security requirements."""
    security = _raw(case).get("security")
    if security is None:
        security = case.operation.schema.raw_schema.get("security") or []
    schemes = {name for requirement in security for name in requirement}
    if API_KEY_SCHEME in schemes:
        return "apiKey"
    if BEARER_SCHEME in schemes:
        return "bearer"
    return "none"


@schemathesis.auth(cache_by_key=credential_kind, refresh_interval=600)
class KyrosCredentials:
    def get(self, case: Any, ctx: Any) -> str | None:
        kind = credential_kind(case)
        if kind == "apiKey":
            return ADMIN_KEY or None
        if kind == "bearer" and ADMIN_USER:
            response = requests.post(
                f"{BASE_URL}/auth/login",
                json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
                timeout=30,
            )
            response.raise_for_status()
            return response.json()["access_token"]
        return None

    def set(self, case: Any, data: str, ctx: Any) -> None:
        if case.headers is None:
            case.headers = {}
        if credential_kind(case) == "apiKey":
            case.headers["X-API-Key"] = data
        else:
            case.headers["Authorization"] = f"Bearer {data}"


_sse_cache: dict[str, bool] = {}


def _is_event_stream(case: Any) -> bool:
    op = case.operation
    key = f"{op.method} {op.path}"
    if key not in _sse_cache:
        found = op.path in SSE_PATHS
        for response in (_raw(case).get("responses") or {}).values():
            if isinstance(response, dict) and "text/event-stream" in (
                response.get("content") or {}
            ):
                found = True
        _sse_cache[key] = found and str(op.method).upper() == "GET"
    return _sse_cache[key]


@schemathesis.hook
def before_call(context: Any, case: Any, **kwargs: Any) -> None:
    if PROTECTED_IDS and case.path_parameters:
        for name, value in list(case.path_parameters.items()):
            if isinstance(value, str) and value.strip().lower() in PROTECTED_IDS:
                case.path_parameters[name] = str(uuid.uuid4())
    if _is_event_stream(case):
        query = dict(case.query or {})
        query["once"] = "true"
        case.query = query
