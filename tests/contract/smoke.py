"""Smoke flow of `.ci/contract` through a client generated from `/api/v1/openapi.json`.

Only the generated package is used to talk to the service (openapi-python-client: its `Client` /
`AuthenticatedClient`, the `api/<tag>/<operationId>.py` functions and the models they take and
return): when a step cannot be written with it — an operation, a request body, a response body
missing from the document — the document is wrong, and the step says which operation.

Operations are found by their operationId (`post_api_v1_jobs`, …, see `operation_id` in
src/http/api.rs) in whichever tag folder the generator put them; request bodies are built with
the model class the generated function declares for `body` (`Model.from_dict`), so the flow does
not depend on schema names.

Flow: a user logs in (bearer token), creates a job, lists jobs (ETag), lists again with
If-None-Match (304); an agent key of that user claims the job and completes it with the claim's
lease_token; the user reads the job back and sees the list's ETag change; an administrator logs in
and finds the flow in the audit log.

Inputs (environment): KYROS_BASE_URL, KYROS_CLIENT_PACKAGE (default kyros_client),
KYROS_SMOKE_USER / KYROS_SMOKE_PASSWORD, KYROS_SMOKE_ADMIN / KYROS_SMOKE_ADMIN_PASSWORD,
KYROS_SMOKE_AGENT_KEY / KYROS_SMOKE_AGENT_KEY_NAME. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import inspect
import json
import os
import pkgutil
import sys
import time
import traceback
import typing
import uuid
from collections.abc import Callable
from types import ModuleType
from typing import Any


class StepFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


class Generated:
    """The generated package: operations by operationId, and the two client classes."""

    def __init__(self, package: str) -> None:
        self.package = importlib.import_module(package)
        client = importlib.import_module(f"{package}.client")
        self.Client = client.Client
        self.AuthenticatedClient = client.AuthenticatedClient
        api = importlib.import_module(f"{package}.api")
        self.operations: dict[str, str] = {}
        for info in pkgutil.walk_packages(api.__path__, f"{package}.api."):
            if not info.ispkg:
                self.operations[info.name.rsplit(".", 1)[-1]] = info.name

    def op(self, operation_id: str) -> ModuleType:
        name = self.operations.get(operation_id)
        if name is None:
            raise StepFailed(
                f"operation {operation_id} is not in the generated client: the document lacks it "
                f"(or the generator dropped it)"
            )
        return importlib.import_module(name)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 (an unresolvable annotation: use the raw ones)
        return {k: p.annotation for k, p in inspect.signature(fn).parameters.items()}


def _candidates(annotation: Any) -> tuple[Any, ...]:
    args = typing.get_args(annotation)
    return args if args else (annotation,)


def call(module: ModuleType, client: Any, *, body: dict | None = None, **params: Any) -> Any:
    """`module.sync_detailed(client=…, body=<model>, **params)`, params converted to the types the
    generated function declares (UUID path parameters, enum query parameters), and only those it
    declares: a parameter the document lacks is an error, not silently dropped."""
    fn = module.sync_detailed
    signature = inspect.signature(fn)
    hints = _hints(fn)
    op = module.__name__.rsplit(".", 1)[-1]
    kwargs: dict[str, Any] = {"client": client}
    if body is not None:
        check("body" in signature.parameters, f"{op}: the document declares no request body")
        models = [c for c in _candidates(hints.get("body")) if hasattr(c, "from_dict")]
        check(bool(models), f"{op}: the request body has no model (schema-less body)")
        kwargs["body"] = models[0].from_dict(body)
    for name, value in params.items():
        check(name in signature.parameters, f"{op}: the document declares no parameter {name!r}")
        for kind in _candidates(hints.get(name)):
            if kind is uuid.UUID and isinstance(value, str):
                value = uuid.UUID(value)
                break
            if inspect.isclass(kind) and issubclass(kind, enum.Enum):
                value = kind(value)
                break
        kwargs[name] = value
    return fn(**kwargs)


def as_dict(parsed: Any) -> dict:
    if parsed is None:
        return {}
    if hasattr(parsed, "to_dict"):
        return parsed.to_dict()
    if isinstance(parsed, dict):
        return parsed
    raise StepFailed(f"unexpected parsed body type {type(parsed).__name__}")


def expect(response: Any, status: int, op: str, *, model: bool = True) -> dict:
    """The status, and (with `model`) a parsed body that is not the error envelope."""
    body_text = response.content[:300].decode("utf-8", "replace")
    check(
        int(response.status_code) == status,
        f"{op}: expected {status}, got {int(response.status_code)}: {body_text}",
    )
    if not model:
        return {}
    parsed = response.parsed
    check(
        parsed is not None,
        f"{op}: the {status} answer has no documented body (the generated client parsed nothing)",
    )
    check(
        type(parsed).__name__ != "ErrorEnvelope",
        f"{op}: the {status} answer was parsed as the error envelope",
    )
    return (
        as_dict(parsed) if not isinstance(parsed, list) else {"items": [as_dict(p) for p in parsed]}
    )


def job_list(response: Any, op: str) -> list[dict]:
    parsed = response.parsed
    if isinstance(parsed, list):
        return [as_dict(p) for p in parsed]
    d = as_dict(parsed)
    for key in ("items", "jobs", "data"):
        if isinstance(d.get(key), list):
            return d[key]
    raise StepFailed(f"{op}: the list answer has no list of jobs: {sorted(d)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--require-job-audit",
        action="store_true",
        default=os.environ.get("KYROS_SMOKE_REQUIRE_JOB_AUDIT") == "1",
        help="fail unless an audit row names the job (the service audits no job event today)",
    )
    args = parser.parse_args()

    env = os.environ
    base_url = env["KYROS_BASE_URL"]
    gen = Generated(env.get("KYROS_CLIENT_PACKAGE", "kyros_client"))
    user, password = env["KYROS_SMOKE_USER"], env["KYROS_SMOKE_PASSWORD"]
    admin, admin_password = env["KYROS_SMOKE_ADMIN"], env["KYROS_SMOKE_ADMIN_PASSWORD"]
    agent_key, agent_key_name = env["KYROS_SMOKE_AGENT_KEY"], env["KYROS_SMOKE_AGENT_KEY_NAME"]
    run = uuid.uuid4().hex[:8]
    title = f"contract smoke {run}"
    timeout = 30.0

    def anonymous() -> Any:
        return gen.Client(base_url=base_url, timeout=timeout, raise_on_unexpected_status=True)

    def bearer(token: str, **headers: str) -> Any:
        return gen.AuthenticatedClient(
            base_url=base_url,
            token=token,
            headers=dict(headers),
            timeout=timeout,
            raise_on_unexpected_status=True,
        )

    def api_key(key: str) -> Any:
        return gen.AuthenticatedClient(
            base_url=base_url,
            token=key,
            prefix="",
            auth_header_name="X-API-Key",
            timeout=timeout,
            raise_on_unexpected_status=True,
        )

    state: dict[str, Any] = {}
    results: list[tuple[str, bool, str]] = []

    def login(name: str, secret: str) -> str:
        op = "post_auth_login"
        r = call(gen.op(op), anonymous(), body={"username": name, "password": secret})
        d = expect(r, 200, op)
        token = d.get("access_token")
        check(
            isinstance(token, str) and token.count(".") == 2,
            f"{op}: no JWT access_token: {sorted(d)}",
        )
        check(
            str(d.get("token_type", "")).lower() == "bearer",
            f"{op}: token_type {d.get('token_type')!r}",
        )
        check(bool(d.get("refresh_token")), f"{op}: no refresh_token")
        return token

    def step_login() -> str:
        state["token"] = login(user, password)
        return f"{user} has a bearer token"

    def step_create() -> str:
        op = "post_api_v1_jobs"
        r = call(
            gen.op(op),
            bearer(state["token"]),
            body={
                "title": title,
                "description": "created by tests/contract/smoke.py",
                "priority": 5,
                "metadata": {"run": run},
            },
        )
        d = expect(r, 201, op)
        check(bool(d.get("id")), f"{op}: no id")
        check(d.get("status") == "pending", f"{op}: status {d.get('status')!r}, expected pending")
        check(title in (d.get("name"), d.get("title")), f"{op}: the title did not come back")
        check(bool(r.headers.get("etag")), f"{op}: no ETag header")
        check(d["id"] in r.headers.get("location", ""), f"{op}: Location does not name the job")
        state["job"] = d["id"]
        return f"job {d['id']} pending, ETag {r.headers['etag'][:12]}…"

    def step_list() -> str:
        op = "get_api_v1_jobs"
        r = call(gen.op(op), bearer(state["token"]))
        expect(r, 200, op)
        jobs = job_list(r, op)
        check(any(j.get("id") == state["job"] for j in jobs), f"{op}: the new job is not listed")
        etag = r.headers.get("etag")
        check(bool(etag), f"{op}: no ETag header")
        state["etag"] = etag
        return f"{len(jobs)} job(s), ETag {etag[:12]}…"

    def conditional_list(expected: int) -> Any:
        op = "get_api_v1_jobs"
        module = gen.op(op)
        if "if_none_match" in inspect.signature(module.sync_detailed).parameters:
            r = call(module, bearer(state["token"]), if_none_match=state["etag"])
            how = "if_none_match parameter"
        else:
            # The document does not declare the header: send it on the client instead.
            r = call(module, bearer(state["token"], **{"If-None-Match": state["etag"]}))
            how = "If-None-Match client header (undeclared in the document)"
        expect(r, expected, op, model=expected != 304)
        return r, how

    def step_not_modified() -> str:
        r, how = conditional_list(304)
        check(r.content == b"", "get_api_v1_jobs: a 304 with a body")
        return f"304 with {how}"

    def step_claim() -> str:
        op = "post_api_v1_agents_claim"
        # What `kyros agent` sends: who it is (the body is optional for older agents).
        r = call(
            gen.op(op),
            api_key(agent_key),
            body={"name": "smoke-agent", "labels": ["smoke"], "version": "contract"},
        )
        d = expect(r, 200, op)
        check(d.get("id") == state["job"], f"{op}: claimed {d.get('id')}, expected {state['job']}")
        check(d.get("status") == "running", f"{op}: status {d.get('status')!r}, expected running")
        check(bool(d.get("lease_token")), f"{op}: no lease_token")
        state["lease"] = d["lease_token"]
        return f"agent holds the lease (attempt {d.get('attempts')})"

    def step_complete() -> str:
        op = "post_api_v1_agents_jobs_id_complete"
        result = {"ok": True, "run": run}
        r = call(
            gen.op(op),
            api_key(agent_key),
            id=state["job"],
            body={"lease_token": state["lease"], "result": result},
        )
        d = expect(r, 200, op)
        check(
            d.get("status") == "completed", f"{op}: status {d.get('status')!r}, expected completed"
        )
        check(d.get("result") == result, f"{op}: result {d.get('result')!r}")
        return "job completed with its result"

    def step_read_back() -> str:
        op = "get_api_v1_jobs_id"
        r = call(gen.op(op), bearer(state["token"]), id=state["job"])
        d = expect(r, 200, op)
        check(d.get("status") == "completed", f"{op}: status {d.get('status')!r}")
        check(bool(d.get("completed_at")), f"{op}: no completed_at")
        r, _ = conditional_list(200)
        check(
            r.headers.get("etag") not in (None, state["etag"]),
            "get_api_v1_jobs: the ETag did not change",
        )
        return "the owner sees it completed; the list's ETag changed (200 to the old one)"

    def step_audit() -> str:
        admin_token = login(admin, admin_password)
        op = "get_api_v1_admin_audit"
        module = gen.op(op)
        accepted = inspect.signature(module.sync_detailed).parameters
        params = {"limit": 500} if "limit" in accepted else {}
        deadline = time.monotonic() + 10  # audit rows are written in batches
        while True:
            r = call(module, bearer(admin_token), **params)
            d = expect(r, 200, op)
            rows = d.get("items")
            check(isinstance(rows, list), f"{op}: no items list: {sorted(d)}")
            login_row = next(
                (
                    x
                    for x in rows
                    if x.get("event") == "auth.login"
                    and x.get("outcome") == "success"
                    and x.get("actor") == user
                ),
                None,
            )
            agent_row = next(
                (
                    x
                    for x in rows
                    if x.get("event") == "apikey.first_used"
                    and (x.get("details") or {}).get("name") == agent_key_name
                ),
                None,
            )
            job_rows = [x for x in rows if state["job"] in json.dumps(x)]
            done = login_row and agent_row and (job_rows or not args.require_job_audit)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        check(login_row is not None, f"{op}: no auth.login success of {user}")
        check(agent_row is not None, f"{op}: no apikey.first_used of the agent key")
        check(agent_row.get("actor") == user, f"{op}: the agent key's first use is not {user}'s")
        note = f"{len(rows)} rows; auth.login of {user}, apikey.first_used of {agent_key_name}"
        if job_rows:
            note += f"; {len(job_rows)} row(s) naming the job: " + ", ".join(
                sorted({x.get("event", "?") for x in job_rows})
            )
        elif args.require_job_audit:
            raise StepFailed(f"{op}: no audit row names job {state['job']}")
        else:
            note += "; no row names the job (the service audits no job event)"
        return note

    steps: list[tuple[str, Callable[[], str]]] = [
        ("log in (POST /auth/login)", step_login),
        ("create a job (POST /api/v1/jobs)", step_create),
        ("list jobs with ETag (GET /api/v1/jobs)", step_list),
        ("list again with If-None-Match: 304", step_not_modified),
        ("agent claims it (POST /api/v1/agents/claim)", step_claim),
        ("agent completes it (POST /api/v1/agents/jobs/{id}/complete)", step_complete),
        ("owner reads it back (GET /api/v1/jobs/{id}, list ETag)", step_read_back),
        ("admin reads the audit log (GET /api/v1/admin/audit)", step_audit),
    ]
    for name, fn in steps:
        try:
            note = fn()
            results.append((name, True, note))
            print(f"  ok    {name}: {note}", flush=True)
        except Exception as e:  # noqa: BLE001 (a failed step ends the flow: later ones need it)
            detail = (
                str(e)
                if isinstance(e, StepFailed)
                else "".join(traceback.format_exception_only(type(e), e)).strip()
            )
            results.append((name, False, detail))
            print(f"  FAIL  {name}: {detail}", flush=True)
            break
    passed = sum(1 for _, ok, _ in results if ok)
    failed = len(steps) - passed
    # Deliberately not the bare "N passed, N failed" closing-line format: .ci/run's test count
    # belongs to cargo test.
    print(
        f"smoke steps: {passed}/{len(steps)} passed"
        + (f" ({failed} failed or not reached)" if failed else "")
    )
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
