"""The command line of cluster mode: `kop broker`'s auto-recovery options, the options
`BrokerProcess` (and so `kop dev-cluster`) passes, and `kop auto-recovery`."""

from __future__ import annotations

import pytest

from kop.cli import auto_recovery_settings, build_parser, main
from kop.cluster.process import auto_recovery_options
from storage.ledger.auto_recovery import AutoRecoverySettings

URL = "zk://127.0.0.1:2181/kop"


def broker_args(*options: str):
    return build_parser().parse_args(["broker", "--metadata", URL, *options])


def test_a_broker_runs_auto_recovery_with_the_usual_settings_by_default():
    assert auto_recovery_settings(broker_args()) == AutoRecoverySettings()


@pytest.mark.parametrize("settings", [
    AutoRecoverySettings(grace_period=0.0, audit_interval=0.25, retry_interval=7.5),
    AutoRecoverySettings(grace_period=45.0),
    None,
])
def test_the_options_a_broker_process_gets_give_it_those_settings(settings):
    assert auto_recovery_settings(broker_args(*auto_recovery_options(settings))) == settings


@pytest.mark.parametrize("option, value", [
    ("--recovery-grace-period", "-1"),
    ("--recovery-grace-period", "nan"),
    ("--recovery-audit-interval", "0"),
    ("--recovery-retry-interval", "soon"),
])
def test_bad_auto_recovery_options_are_refused(option, value, capsys):
    with pytest.raises(SystemExit) as exited:
        broker_args(option, value)
    assert exited.value.code == 2
    assert option in capsys.readouterr().err


def test_kop_auto_recovery_is_the_auto_recovery_service(capsys):
    # Its own parser and checks answer (a bad grace period), before anything connects.
    assert main(["auto-recovery", "--metadata", URL, "--grace-period", "-5"]) == 2
    assert "grace_period must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["auto-recovery", "--help"])
    assert exited.value.code == 0
    assert "--grace-period" in capsys.readouterr().out
