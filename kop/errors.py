"""Kafka errors raised inside kop's domain code and turned into error codes by handlers."""

from __future__ import annotations

from wire.generated.error_codes import ErrorCode


class KafkaError(Exception):
    """A failure with a Kafka error code and a message for the client (where the API has one)."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message


def error_code_of(exc: BaseException) -> ErrorCode:
    return exc.code if isinstance(exc, KafkaError) else ErrorCode.UNKNOWN_SERVER_ERROR
