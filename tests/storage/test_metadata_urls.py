"""Metadata store URLs and path rules: what is accepted, and what is refused with which message."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.metadata import InvalidPathError
from storage.metadata.paths import child_path, parent_of, validate_path
from storage.metadata.urls import EmbeddedLocation, ZooKeeperLocation, parse_metadata_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("zk://zk1:2181/kop-prod", ZooKeeperLocation("zk1:2181", "/kop-prod", 10.0)),
        (
            "zk://zk1,zk2:2182,10.0.0.3:2183",
            ZooKeeperLocation("zk1:2181,zk2:2182,10.0.0.3:2183", "/kop", 10.0),
        ),
        ("zk://[::1]:2181/", ZooKeeperLocation("[::1]:2181", "/kop", 10.0)),
        ("zk://h:1/a/b?session_timeout=2.5", ZooKeeperLocation("h:1", "/a/b", 2.5)),
        ("file:///var/lib/kop/metadata", EmbeddedLocation(Path("/var/lib/kop/metadata"))),
        ("file://localhost/srv/meta%20data", EmbeddedLocation(Path("/srv/meta data"))),
        ("kop-data/metadata", EmbeddedLocation(Path("kop-data/metadata"))),
        ("/abs/dir", EmbeddedLocation(Path("/abs/dir"))),
    ],
)
def test_url_forms(url, expected):
    assert parse_metadata_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty metadata store URL"),
        ("http://zk:2181/kop", "unsupported metadata store URL"),
        ("zk://", "bad host:port"),
        ("zk://zk1:2181,/kop", "bad host:port"),
        ("zk://zk1:notaport/kop", "bad host:port"),
        ("zk://zk1:70000/kop", "out of range"),
        ("zk://zk1:2181/kop/", "bad chroot"),
        ("zk://zk1:2181/kop?timeout=3", "unknown option 'timeout'"),
        ("zk://zk1:2181/kop?session_timeout=soon", "session_timeout must be seconds"),
        ("zk://zk1:2181/kop?session_timeout=0", "out of range"),
        ("file://otherhost/dir", "bad file URL"),
        ("file:///dir?x=1", "takes no query"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, message):
    with pytest.raises(ValueError, match=message):
        parse_metadata_url(url)


@pytest.mark.parametrize(
    "path",
    ["/", "/a", "/a/b-c_d.e", "/ünïcode/名前", "/a/.hidden", "/a/..dots", "/with space"],
)
def test_valid_paths(path):
    assert validate_path(path) == path


def test_sequential_prefix_may_end_in_a_slash_but_plain_paths_may_not():
    assert validate_path("/queue/", sequential=True) == "/queue/"
    with pytest.raises(InvalidPathError, match="empty node name"):
        validate_path("/queue/")


def test_invalid_path_error_is_a_value_error_naming_the_problem():
    with pytest.raises(ValueError, match=r"forbidden character U\+0001"):
        validate_path("/bad\x01name")


def test_parent_and_child_paths():
    assert parent_of("/a/b/c") == "/a/b"
    assert parent_of("/a") == "/"
    assert parent_of("/") == "/"
    assert child_path("/", "a") == "/a"
    assert child_path("/a", "b") == "/a/b"
