"""Every message, every version: round trips, and the fast path agrees with construct.

For each (message, version) — requests and responses of every client-facing
api, headers, embedded structures — Hypothesis draws messages from the schema
and checks:

* decode(encode(m)) == m, through the public codec;
* encode(decode(x)) == x for bytes x written by the reference (construct) codec;
* the generated fast path and the construct definitions write the same bytes
  and read them back to the same message.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.wire.message_strategies import message_strategy
from wire.codec import decode_message, encode_message
from wire.construct_codec import construct_decode, construct_encode
from wire.fastpath import fast_decoder, fast_encoder
from wire.messages import MESSAGES, MODELS

CASES = [
    pytest.param(name, version, id=f"{name}-v{version}")
    for name, model in sorted(MODELS.items())
    for version in model.versions()
]
EXAMPLES_PER_CASE = 6


def test_every_client_facing_api_is_covered() -> None:
    """The cases include both directions of every api and every version."""
    requests = {c.SPEC.api_key for c in MESSAGES.values() if c.SPEC.kind == "request"}
    responses = {c.SPEC.api_key for c in MESSAGES.values() if c.SPEC.kind == "response"}
    assert requests == responses
    assert {0, 1, 3, 18, 19, 22, 32} <= requests
    assert len(CASES) == sum(len(model.versions()) for model in MODELS.values())


def _fast_encode(message: object, name: str, version: int) -> bytes:
    out: list[bytes] = []
    fast_encoder(MODELS[name], version)(message, out)
    return b"".join(out)


_SETTINGS = settings(
    max_examples=EXAMPLES_PER_CASE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize(("name", "version"), CASES)
def test_round_trip_and_agreement(name: str, version: int) -> None:
    # The property runs as an inner @given function: pytest-twisted re-wraps the
    # Hypothesis test of a parametrized function once per case, which breaks.
    cls = MESSAGES[name]

    @_SETTINGS
    @given(message=message_strategy(cls, version))
    def check(message: object) -> None:
        reference_bytes = construct_encode(message, version)
        fast_bytes = _fast_encode(message, name, version)
        assert fast_bytes == reference_bytes

        reference_message, reference_end = construct_decode(cls, reference_bytes, version)
        fast_message, fast_end = fast_decoder(MODELS[name], version)(
            reference_bytes, 0, len(reference_bytes)
        )
        assert reference_message == message
        assert fast_message == message
        assert reference_end == fast_end == len(reference_bytes)

        # Through the public entry points, both ways round.
        assert decode_message(cls, encode_message(message, version), version) == message
        decoded = decode_message(cls, reference_bytes, version)
        assert encode_message(decoded, version) == reference_bytes

    check()
