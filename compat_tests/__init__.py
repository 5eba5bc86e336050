"""compat_tests: unmodified Kafka clients x scenarios against any broker."""
