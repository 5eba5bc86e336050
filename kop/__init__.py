"""kop: the Kafka gateway over the native storage model."""
