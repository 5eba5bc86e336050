"""The first thing a user does: start kop, produce with kcat, consume with kcat."""

from __future__ import annotations

import subprocess


def test_kcat_round_trip(bootstrap: str) -> None:
    lines = [f"key{i}:value{i}" for i in range(20)]
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "demo", "-K:"],
                   input="\n".join(lines) + "\n", text=True, check=True, timeout=60)
    consumed = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", "demo", "-e", "-f", "%o %k %s\\n"],
        capture_output=True, text=True, check=True, timeout=60)
    assert consumed.stdout.splitlines() == [f"{i} key{i} value{i}" for i in range(20)]
