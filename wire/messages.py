"""Every Kafka message the codec covers, as a Python class.

    from wire.messages import ProduceRequest, FetchResponse, MetadataResponse

    request = ProduceRequest(acks=-1, timeout_ms=30000, topic_data=[
        ProduceRequest.TopicProduceData(name="orders", partition_data=[
            ProduceRequest.PartitionProduceData(index=0, records=batch_bytes)])])
    body = request.encode(9)
    assert ProduceRequest.decode(body, 9) == request

Classes are built at import time from the generated facts in
``wire.generated`` (see ``wire.model`` for the value conventions). Nested
structs are attributes of their message class. The request and response
headers are exported as ``RequestHeaderData`` and ``ResponseHeaderData``
(``wire.protocol.RequestHeader`` is the friendlier header the server uses).

``MESSAGES`` maps a spec name to its class; ``MODELS`` to its resolved model.
"""

from __future__ import annotations

from typing import Any

from wire.generated import ALL_SPECS
from wire.model import Message, MessageModel, build_message

MODELS: dict[str, MessageModel] = {spec.name: build_message(spec) for spec in ALL_SPECS}
MESSAGES: dict[str, type[Message]] = {name: model.cls for name, model in MODELS.items()}

_EXPORT_NAMES = {"RequestHeader": "RequestHeaderData", "ResponseHeader": "ResponseHeaderData"}

for _name, _cls in MESSAGES.items():
    globals()[_EXPORT_NAMES.get(_name, _name)] = _cls

__all__ = sorted(_EXPORT_NAMES.get(name, name) for name in MESSAGES) + ["MESSAGES", "MODELS"]


def __getattr__(name: str) -> Any:  # only reached for names that do not exist
    raise AttributeError(f"wire.messages has no message named {name!r}")
