"""Schemathesis hooks of `.ci/contract` (loaded with SCHEMATHESIS_HOOKS=st_hooks).

They keep the run meaningful without excluding operations from it:

* The fuzzer's own identity is out of reach. Schemathesis learns ids from responses (stateful
  links, `Location` headers, `GET /api/v1/admin/users`) and would, sooner or later, send
  `PATCH /api/v1/admin/users/{id}` `{"active": false}` or `{"role": "user"}` to the owner of the
  admin key it authenticates with: every later request would then be a 401/403 and the rest of
  the run would test nothing. Any path parameter equal to one of the protected ids
  (`KYROS_CONTRACT_PROTECTED_IDS`: the fuzz admin's user id and its key id) is replaced with a
  fresh random UUID (an unknown id: the operation still runs, to its 404).
* Server-sent event streams end only when the client leaves. The service's `?once=true` makes
  them send the backlog and close, so they are forced to `once=true` and fuzzed like any other
  GET (their other parameters and `Last-Event-ID` still vary).

And one workaround: CPython 3.11's `ast.parse` is not safe to call from two threads at once
(python/cpython#106905: "SystemError: AST constructor recursion depth mismatch"), and Hypothesis
parses sources to describe strategies while schemathesis' workers build them. Calls are
serialized with a lock (they happen while strategies are built, not per request).
"""

from __future__ import annotations

import ast
import os
import threading
import uuid
from typing import Any

import schemathesis

_ast_parse = ast.parse
_ast_lock = threading.Lock()


def _serialized_parse(*args: Any, **kwargs: Any) -> Any:
    with _ast_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _serialized_parse

PROTECTED_IDS = {
    v.strip().lower()
    for v in os.environ.get("KYROS_CONTRACT_PROTECTED_IDS", "").split(",")
    if v.strip()
}

# Fallback when an SSE operation does not (yet) document `text/event-stream`.
SSE_PATHS = {"/api/v1/events/tail", "/api/v1/orchestrator/events/stream"}

_sse_cache: dict[str, bool] = {}


def _is_event_stream(case: Any) -> bool:
    op = case.operation
    key = f"{op.method} {op.path}"
    if key not in _sse_cache:
        found = op.path in SSE_PATHS
        raw = getattr(getattr(op, "definition", None), "raw", None) or {}
        for response in (raw.get("responses") or {}).values():
            if isinstance(response, dict) and "text/event-stream" in (response.get("content") or {}):
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
