"""The generator of ``wire/generated/``: Kafka message specs in, Python facts out.

Run ``python -m wire.codegen [--spec-dir DIR]`` from anywhere; the default spec
directory is ``../shared/kafka-protocol`` next to the repository.
"""

from wire.codegen.generator import SpecError, generate

__all__ = ["SpecError", "generate"]
