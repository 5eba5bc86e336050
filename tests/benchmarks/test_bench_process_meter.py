"""benchmarks.process_meter on a real child process: CPU seconds, peak RSS and its reset."""

import os
import subprocess
import sys
import textwrap

import pytest

from benchmarks.process_meter import (
    ProcessGoneError,
    ProcessMeter,
    parse_cpu_seconds,
    parse_status_kib,
)

CHILD = textwrap.dedent("""
    import sys, time
    held = None
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "burn":      # spend this much CPU time, whatever the machine's load
            start = time.process_time()
            while time.process_time() - start < float(argument):
                pass
        elif command == "hold":    # keep this many MB resident (every page written)
            held = b"x" * (int(argument) * 1_000_000)
        elif command == "free":
            held = None
        print("ok", flush=True)
""")


class Child:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def do(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "ok"


@pytest.fixture
def child():
    running = Child()
    yield running
    running.process.kill()
    running.process.wait()


def test_cpu_seconds_count_the_work_done_between_start_and_stop(child):
    meter = ProcessMeter(child.process.pid)
    meter.start()
    child.do("burn 0.3")
    usage = meter.stop()
    assert 0.25 <= usage.cpu_seconds < 2.0


def test_peak_is_reset_for_each_workload(child):
    meter = ProcessMeter(child.process.pid)
    child.do("hold 150")
    child.do("free")
    assert meter.peak_rss_bytes() >= 150_000_000
    meter.start()
    child.do("hold 40")
    usage = meter.stop()
    assert meter.peak_is_per_workload
    assert 40_000_000 <= usage.peak_rss_bytes < 150_000_000


def test_stop_without_start_is_a_mistake(child):
    with pytest.raises(RuntimeError):
        ProcessMeter(child.process.pid).stop()


def test_an_exited_process_is_not_alive_then_gone(child):
    meter = ProcessMeter(child.process.pid)
    assert meter.alive()
    child.process.stdin.close()  # the child's loop ends; it exits
    # Wait for the exit but leave the child unreaped: a zombie must not count as alive.
    os.waitid(os.P_PID, child.process.pid, os.WEXITED | os.WNOWAIT)
    assert not meter.alive()
    child.process.wait()
    with pytest.raises(ProcessGoneError):
        meter.cpu_seconds()


def test_stat_parsing_survives_odd_command_names():
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S"] + ["0"] * 10 + [str(3 * ticks), str(2 * ticks)] + ["0"] * 30
    assert parse_cpu_seconds("42 (we ird) (name)) " + " ".join(fields)) == 5.0


def test_status_parsing_reads_kilobytes_and_names_a_missing_field():
    status = "Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"
    assert parse_status_kib(status, "VmHWM") == 2048 * 1024
    with pytest.raises(ValueError, match="VmSwap"):
        parse_status_kib(status, "VmSwap")
