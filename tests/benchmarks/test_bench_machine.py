"""benchmarks.machine: the conditions stored with results (mounts, fsync probe)."""

import re
from pathlib import Path

from benchmarks.machine import filesystem_of, fsync_latency

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
/dev/vdb /tmpdata xfs rw 0 0
proc /proc proc rw 0 0
"""


def test_the_deepest_mount_holding_the_path_wins():
    assert filesystem_of(Path("/tmp/kop-1"), MOUNTS) == "tmpfs on tmpfs (mounted at /tmp)"
    assert filesystem_of(Path("/work/main"), MOUNTS) == "ext4 on /dev/vda (mounted at /)"


def test_a_mount_point_is_not_a_mere_name_prefix():
    assert filesystem_of(Path("/tmpdata/x"), MOUNTS) == "xfs on /dev/vdb (mounted at /tmpdata)"
    assert filesystem_of(Path("/tmpd"), MOUNTS) == "ext4 on /dev/vda (mounted at /)"


def test_unreadable_mounts_say_unknown():
    assert filesystem_of(Path("/x"), "garbage\n") == "unknown"


def test_fsync_probe_measures_and_cleans_up(tmp_path):
    text = fsync_latency(tmp_path, writes=3, size=1024)
    assert re.fullmatch(r"p50 \d+\.\d\d ms, p90 \d+\.\d\d ms \(3 fsyncs of 1 KiB appends\)", text)
    assert not list(tmp_path.iterdir())
