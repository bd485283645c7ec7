"""The chaos benchmark, short: workflow runs and chat turns under a budget while two workers
and the server are SIGKILLed ten times and PostgreSQL restarts twice, then nothing may be
lost, failed, stuck, delivered twice or bought twice.

It runs `benchmarks/chaos.py` (`benchmarks` is a namespace package, imported from the
repository root as the workers import `benchmarks.chaos_app`) once for the module, on its
own embedded PostgreSQL: the tests' shared server is never restarted. What each figure means
is in that module's docstring.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.chaos import Settings, run
from threadline.loop import run as run_loop

pytestmark = [pytest.mark.slow, pytest.mark.processes]

SHORT = Settings(
    duration=45, kills=10, pg_restarts=2, rate=2, clients=3, turns=4, drain=45, seed=11
)


@pytest.fixture(scope="module")
def found() -> dict[str, Any]:
    result: dict[str, Any] = run_loop(run(SHORT))
    print(json.dumps(result, indent=1))  # shown with the failure: every figure and example
    assert result["runs"]["started"] > 0 and result["chat"]["client_sent"] > 0
    return result


def test_no_run_is_lost(found: dict[str, Any]) -> None:
    runs = found["runs"]
    assert runs["lost"] == 0, runs["examples"]["lost"]


def test_no_run_fails(found: dict[str, Any]) -> None:
    runs, turns = found["runs"], found["turn_runs"]
    assert (runs["failed"], turns["failed"]) == (0, 0), runs["examples"]


def test_no_run_is_stuck(found: dict[str, Any]) -> None:
    runs, turns = found["runs"], found["turn_runs"]
    assert (runs["stuck"], turns["stuck"]) == (0, 0), (runs["examples"], turns["examples"])
    assert (runs["unfinished"], turns["unfinished"]) == (0, 0)


def test_no_chat_event_is_duplicated_or_lost(found: dict[str, Any]) -> None:
    chat = found["chat"]
    in_the_log = {
        k: chat[k]
        for k in (
            "log_missing_end",
            "log_duplicate_end",
            "log_user_event_not_once",
            "log_answer_stored_twice",
            "log_seq_gaps",
        )
    }
    seen_by_clients = {
        k: chat[k]
        for k in (
            "client_missing_answers",
            "client_duplicate_answers",
            "client_events_missed",
            "client_seq_duplicates",
            "client_garbled_answers",
        )
    }
    assert not any(in_the_log.values()), (in_the_log, chat["examples"])
    assert not any(seen_by_clients.values()), (seen_by_clients, chat["examples"])


def test_no_call_is_bought_twice(found: dict[str, Any]) -> None:
    ledger = found["ledger"]
    assert ledger["bought_twice"] == 0, ledger["examples"]["bought_twice"]
