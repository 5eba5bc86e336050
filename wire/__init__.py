"""wire: the Kafka protocol as pure code — no sockets, no Twisted, no storage."""
