"""InitProducerId (key 22) v0-5.

Without a transactional id: a fresh producer id with epoch 0 (idempotent producers). v3+
requests that carry their current id and epoch (a producer recovering from an error) get
the same id with the epoch bumped. Old versions matter: aiokafka uses v0 and kafkajs v1.
With a transactional id the transaction coordinator answers (fencing older epochs); a
transaction timeout above `transaction.max.timeout.ms` is refused with
INVALID_TRANSACTION_TIMEOUT.
"""

from __future__ import annotations

from twisted.internet import defer

from kop.errors import KafkaError
from kop.handlers.registry import handles
from kop.handlers.transactions import fencing_code
from wire.generated.error_codes import ErrorCode
from wire.messages import InitProducerIdResponse

INIT_PRODUCER_ID_KEY = 22
MAX_EPOCH = 32767


async def _init_producer_id(ctx, request) -> InitProducerIdResponse:
    broker = ctx.broker
    try:
        if request.transactional_id is not None:
            if broker.transactions is None:
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                                 "transactions are not enabled on this broker")
            producer_id, epoch = await broker.transactions.init_producer(
                request.transactional_id, request.transaction_timeout_ms,
                request.producer_id if ctx.api_version >= 3 else -1,
                request.producer_epoch if ctx.api_version >= 3 else -1)
        elif ctx.api_version >= 3 and request.producer_id >= 0 and 0 <= request.producer_epoch < MAX_EPOCH:
            producer_id, epoch = request.producer_id, request.producer_epoch + 1
        else:
            producer_id, epoch = await broker.producer_ids.allocate(), 0
    except KafkaError as exc:
        return InitProducerIdResponse(throttle_time_ms=0,
                                      error_code=fencing_code(exc, ctx.api_version, 4),
                                      producer_id=-1, producer_epoch=-1)
    return InitProducerIdResponse(throttle_time_ms=0, error_code=ErrorCode.NONE,
                                  producer_id=producer_id, producer_epoch=epoch)


@handles(INIT_PRODUCER_ID_KEY, 0, 5)
def handle_init_producer_id(ctx, request) -> defer.Deferred[InitProducerIdResponse]:
    return defer.ensureDeferred(_init_producer_id(ctx, request))
