"""One client x scenario cell, run in its own process (`python -m compat_tests.cell`).

The runner starts this module with a JSON request on stdin and a deadline; it
prints one line `COMPAT-RESULT {outcome}` on stdout. Isolation means a hung or
crashing client library cannot take the suite (or another cell) down with it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Any

from compat_tests import cross_client
from compat_tests.cell_errors import first_error
from compat_tests.clients import CLIENTS
from compat_tests.model import NotExpressible, Outcome
from compat_tests.scenarios import SCENARIOS
from compat_tests.scenarios.context import Context

RESULT_PREFIX = "COMPAT-RESULT "


def run_cell(request: dict[str, Any]) -> Outcome:
    started = time.monotonic()
    scenario_name = request["scenario"]
    ctx = Context(request["run_id"], scenario_name, request["client"], request["bootstrap"])
    client = None
    data: dict[str, Any] = {}
    try:
        client = CLIENTS[request["client"]].load(request["bootstrap"])
        if scenario_name in SCENARIOS:
            SCENARIOS[scenario_name].run(client, ctx)
        else:
            data = cross_client.run_step(client, ctx, request)
        outcome = Outcome("pass", "; ".join(ctx.notes), data=data)
    except NotExpressible as reason:
        outcome = Outcome("n/a", str(reason))
    except Exception as exc:  # every error is a finding, reported as the cell's first error
        traceback.print_exc(file=sys.stderr)
        outcome = Outcome("fail", first_error(exc))
    finally:
        try:
            if client is not None:
                client.close()
        except Exception:  # closing must not hide the outcome
            traceback.print_exc(file=sys.stderr)
    outcome.seconds = time.monotonic() - started
    return outcome


def main() -> int:
    request = json.loads(sys.stdin.read())
    outcome = run_cell(request)
    sys.stdout.write(RESULT_PREFIX + json.dumps(outcome.to_json()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
