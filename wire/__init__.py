"""wire: the Kafka protocol as pure code — no sockets, no Twisted, no storage.

Where things are:

* ``wire.protocol`` — what the server uses: ``API_BY_KEY``, ``RequestHeader``,
  ``decode_request``, ``encode_response`` (and the client-side twins).
* ``wire.messages`` — one class per Kafka message (``ProduceRequest``, ...).
* ``wire.framing`` — ``FrameSplitter``: a byte stream in, frames out.
* ``wire.errors`` — ``DecodeError`` / ``EncodeError``, the only errors raised.
* ``wire.records`` — record batches, legacy message sets, compression.
* ``wire.generated`` — facts generated from Kafka's specs by ``python -m wire.codegen``
  (messages, and ``error_codes.ErrorCode``).
* Engine: ``wire.schema`` (the facts' vocabulary), ``wire.model`` (classes and
  resolved schema), ``wire.constructs`` + ``wire.construct_codec`` (the
  construct reference codec), ``wire.fastpath`` (generated fast codecs),
  ``wire.codec`` (fast path checked by the reference).
"""
