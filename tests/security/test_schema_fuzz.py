"""schemathesis over the live OpenAPI schema: every operation the server publishes, once
anonymous and once with the admin key. No answer may be a 5xx, and every answer must be one
the operation declares (`status_code_conformance`) with a body its declared schema allows
(`response_schema_conformance`): clients are generated from the schema, so an undeclared
401, or a 422 of another shape than the declared one, is a lie to them.

Four passes per operation:
- coverage: schemathesis's deterministic cases (each field missing, of each wrong type, at
  its bounds), as its command line runs them first;
- positive and negative: Hypothesis-generated valid and invalid requests;
- hostile: the valid request with the most values, each value swapped in turn: each string
  for one a database or an encoder chokes on (NUL, 5,000 characters, ...), which random text
  seldom draws, and each value of its JSON body for one of another type.
Half the cases of the first three passes, and every one of the last, name things that exist
(the agent `echo`, a session made for the operation), so they reach the code behind the
lookups, not only the 404 in front of it. A body nested deeper than a JSON parser goes, which
schemathesis cannot send, has a test of its own.

The server is the real one (`serve`), with the rates off: the fuzzer tests input handling,
not the limits (429s would only hide what comes after them). schemathesis calls it with
`requests` from a thread while this test's event loop serves. Hypothesis runs with a fixed
seed, derandomized, a bounded number of examples and no example database; its caches go to a
temporary directory, never into the checkout."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, strategies
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from threadline.web.limits import Limits

from .conftest import ADMIN, Serve

pytestmark = pytest.mark.slow

SEED = 20240611
EXAMPLES = 10  # per operation and generated pass
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]
UNLIMITED = Limits(new_sessions=None, messages=None, session_messages=None)
TIMEOUT = (5.0, 10.0)  # connect, read
STREAM_READ_S = 0.2  # an SSE stream never ends: schemathesis reads one for this long
# Strings that pass for text until they are stored, compared or echoed. No lone surrogate:
# the client cannot encode one (tests/web/test_input_edges.py sends them); no "../..": in a
# path the client resolves it to another route.
HOSTILE = ["\x00", "a\x00b", "A" * 5000, "\u202e", "' OR ''='", "%00", "\r\n"]
OTHER_TYPES: list[Any] = [7, True, {"a": 1}, ["../.."]]


@pytest.fixture(autouse=True)
def hypothesis_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hypothesis's caches (its Unicode tables, the constants it reads from source) in a
    temporary directory, not `.hypothesis/` in the checkout."""
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    yield
    set_hypothesis_home_dir(None)


@pytest.mark.parametrize("who", ["anonymous", "admin"])
async def test_no_operation_fails_or_answers_outside_its_schema(serve: Serve, who: str) -> None:
    async with serve(limits=UNLIMITED) as server:
        r = await server.http.get("/openapi.json", headers=ADMIN)
        assert r.status_code == 200, r.text
        fuzzer = Fuzzer(r.json(), server.url, admin=who == "admin")
        failures = await asyncio.to_thread(fuzzer.run)
    assert not failures, "\n\n".join(failures)


async def test_a_body_nested_deeper_than_the_parser_goes_is_refused(serve: Serve) -> None:
    """Each operation with a JSON body, sent one nested 50,000 deep (schemathesis cannot
    send it: its client's encoder recurses too): a 4xx the operation declares, never a 500."""
    nested = b"[" * 50_000 + b"]" * 50_000
    async with serve(limits=UNLIMITED) as server:
        session = await server.new_session()
        schema = (await server.http.get("/openapi.json", headers=ADMIN)).json()
        for path, operations in schema["paths"].items():
            for method, operation in operations.items():
                if "requestBody" not in operation:
                    continue
                url = path.replace("{session_id}", session["session_id"])
                headers = {**ADMIN, "content-type": "application/json"}
                r = await server.http.request(method, url, content=nested, headers=headers)
                assert str(r.status_code) in operation["responses"], (method, path, r.text)
                assert 400 <= r.status_code < 500, (method, path, r.text)


class Fuzzer:
    def __init__(self, schema: dict[str, Any], url: str, *, admin: bool) -> None:
        self.schema = schemathesis.openapi.from_dict(schema)
        self.url = url
        self.admin = admin

    def run(self) -> list[str]:
        """What each pass over each operation found (its first failure, shrunk), as
        schemathesis words it; none is a pass."""
        failures: list[str] = []
        passes = {
            "coverage": self.coverage,
            "positive": lambda op, sid: self.generated(op, sid, GenerationMode.POSITIVE),
            "negative": lambda op, sid: self.generated(op, sid, GenerationMode.NEGATIVE),
            "hostile": self.hostile,
        }
        for result in self.schema.get_all_operations():
            operation = result.ok()
            session_id = self.new_session()  # the operation's own: a DELETE takes only it
            for name, run in passes.items():
                try:
                    run(operation, session_id)
                except (Exception, FailureGroup) as exc:
                    who = "admin" if self.admin else "anonymous"
                    failures.append(f"{operation.label} ({name}, {who}): {exc}")
        return failures

    def coverage(self, operation: APIOperation, session_id: str) -> None:
        for n, case in enumerate(self.coverage_cases(operation, list(GenerationMode))):
            self.call(self.shape(case, n % 2 == 1, session_id))

    def hostile(self, operation: APIOperation, session_id: str) -> None:
        """On the valid case with the most values, each value hostile in turn."""
        cases = self.coverage_cases(operation, [GenerationMode.POSITIVE])
        fullest = max(cases, key=lambda case: len(list(positions(case))))
        for case in hostile(self.shape(fullest, True, session_id)):
            self.call(case)

    def coverage_cases(self, operation: APIOperation, modes: list[GenerationMode]) -> list[Case]:
        config = self.schema.config.generation_for(operation=operation)
        cases = self.schema.iter_coverage_cases(
            operation, generation_modes=modes, generation_config=config
        )
        return list(cases)

    def generated(self, operation: APIOperation, session_id: str, mode: GenerationMode) -> None:
        strategy = strategies.builds(
            self.shape,
            operation.as_strategy(mode),
            strategies.booleans(),
            strategies.just(session_id),
        )

        @hypothesis.seed(SEED)
        @hypothesis.settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @hypothesis.given(case=strategy)
        def example(case: Case) -> None:
            self.call(case)

        try:
            example()
        except Unsatisfiable:
            # Only free strings in the path and headers: no invalid input survives sending.
            if mode is GenerationMode.POSITIVE:
                raise

    def shape(self, case: Case, real: bool, session_id: str) -> Case:
        """The case with the admin key (or without), and about things that exist if `real`."""
        headers = case.headers if case.headers is not None else {}
        headers.pop("authorization", None)
        if self.admin:
            headers.update(ADMIN)
        case.headers = headers
        if real and case.path_parameters and "session_id" in case.path_parameters:
            case.path_parameters["session_id"] = session_id
        if real and isinstance(case.body, dict) and "agent" in case.body:
            case.body["agent"] = "echo"
        return case

    def call(self, case: Case) -> None:
        if case.operation.path.endswith(("/events", "/stream")):
            try:
                response = case.call(base_url=self.url, timeout=(TIMEOUT[0], STREAM_READ_S))
            except requests.ReadTimeout:  # a busy machine: the headers came late
                response = case.call(base_url=self.url, timeout=(TIMEOUT[0], 2.0))
        else:
            response = case.call(base_url=self.url, timeout=TIMEOUT)
        case.validate_response(response, checks=CHECKS)

    def new_session(self) -> str:
        r = httpx.post(f"{self.url}/v1/sessions", json={"agent": "echo"}, headers=ADMIN)
        assert r.status_code == 201, r.text
        session_id: str = r.json()["session_id"]
        return session_id


Path = tuple[str | int, ...]  # keys into a JSON value
Where = tuple[str, Path]  # a part of a case, and a path into it


def positions(case: Case) -> Iterator[tuple[Where, Any]]:
    """Each value in `case` and where: its path parameters, its query, its JSON body's
    values at any depth."""
    parts = {"path_parameters": case.path_parameters, "query": case.query, "body": case.body}
    for part, value in parts.items():
        if isinstance(value, (dict, list)):
            yield from (((part, at), found) for at, found in _positions(value, ()))


def _positions(value: Any, at: Path) -> Iterator[tuple[Path, Any]]:
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        yield (*at, key), item
        if isinstance(item, (dict, list)):
            yield from _positions(item, (*at, key))


def hostile(case: Case) -> Iterator[Case]:
    """`case` with one value swapped at a time: each string for each hostile string, and each
    value of the body for each of a few of other types (truthy ones: the coverage pass sends
    0, false, null, "", [] and {})."""
    for (part, at), value in positions(case):
        swaps = [
            *(HOSTILE if isinstance(value, str) else []),
            *(OTHER_TYPES if part == "body" else []),
        ]
        for swap in swaps:
            fields = {
                "path_parameters": copy.deepcopy(case.path_parameters),
                "query": copy.deepcopy(case.query),
                # (not a copy of the "no body" marker: schemathesis knows it by identity)
                "body": copy.deepcopy(case.body) if part == "body" else case.body,
            }
            holder = fields[part]
            for key in at[:-1]:
                holder = holder[key]
            holder[at[-1]] = swap
            yield case.operation.Case(
                headers=dict(case.headers or {}), media_type=case.media_type, **fields
            )
