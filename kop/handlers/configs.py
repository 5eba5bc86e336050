"""DescribeConfigs (key 32) v0-4, AlterConfigs (key 33) v0-2, IncrementalAlterConfigs (key 44) v0-1.

Topic resources describe every topic config kop honours, with its value, source
(DYNAMIC_TOPIC_CONFIG for an override, DEFAULT_CONFIG otherwise), type (v3+), documentation
(v3+, when asked) and synonyms (v1+, when asked: the override and the broker default).
Broker resources ("<node id>" or "" for the cluster default) describe the broker settings,
read-only. Altering a config kop does not honour, or giving a bad value, fails the resource
with INVALID_CONFIG naming it; broker configs cannot be altered (INVALID_REQUEST).
AlterConfigs replaces a topic's whole set of overrides; IncrementalAlterConfigs applies
SET / DELETE / APPEND / SUBTRACT (the last two on list configs) to single names.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from kop.configs import (
    TOPIC_CONFIGS,
    ConfigSource,
    ConfigType,
    broker_config_type,
    validate_topic_configs,
)
from kop.errors import KafkaError
from kop.handlers.registry import handles
from wire.generated.error_codes import ErrorCode
from wire.messages import (
    AlterConfigsResponse,
    DescribeConfigsResponse,
    IncrementalAlterConfigsResponse,
)

DESCRIBE_CONFIGS_KEY = 32
ALTER_CONFIGS_KEY = 33
INCREMENTAL_ALTER_CONFIGS_KEY = 44

TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


@dataclass
class DescribedConfig:
    name: str
    value: str | None
    read_only: bool
    config_source: int
    config_type: int
    documentation: str
    synonyms: list[tuple[str, str | None, int]]


def describe_topic_configs(broker, overrides: dict[str, str], keys: list[str] | None,
                           include_synonyms: bool) -> list[DescribedConfig]:
    settings = broker.config.settings
    described = []
    for name, definition in TOPIC_CONFIGS.items():
        if keys is not None and name not in keys:
            continue
        default = settings[definition.broker_name]
        synonyms = []
        if name in overrides:
            value, source = overrides[name], ConfigSource.DYNAMIC_TOPIC_CONFIG
            if include_synonyms:
                synonyms.append((name, value, ConfigSource.DYNAMIC_TOPIC_CONFIG))
        else:
            value, source = default, ConfigSource.DEFAULT_CONFIG
        if include_synonyms:
            synonyms.append((definition.broker_name, default, ConfigSource.DEFAULT_CONFIG))
        described.append(DescribedConfig(name, value, False, source, definition.type,
                                         definition.doc, synonyms))
    return described


def _describe_broker_configs(broker, keys: list[str] | None,
                             include_synonyms: bool) -> list[DescribedConfig]:
    settings = dict(broker.config.settings)
    settings["broker.id"] = str(broker.node_id)
    settings["advertised.listeners"] = f"PLAINTEXT://{broker.config.host}:{broker.config.port}"
    described = []
    for name in sorted(settings):
        if keys is not None and name not in keys:
            continue
        config_type = ConfigType.STRING if name == "advertised.listeners" else broker_config_type(name)
        synonyms = [(name, settings[name], ConfigSource.STATIC_BROKER_CONFIG)] if include_synonyms else []
        described.append(DescribedConfig(name, settings[name], True,
                                         ConfigSource.STATIC_BROKER_CONFIG, config_type, "",
                                         synonyms))
    return described


def _check_broker_name(broker, name: str) -> None:
    if name not in ("", str(broker.node_id)):
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Broker {name} is not this broker")


async def _describe_configs(ctx, request) -> DescribeConfigsResponse:
    broker = ctx.broker
    version = ctx.api_version
    include_synonyms = version >= 1 and request.include_synonyms
    include_docs = version >= 3 and request.include_documentation
    results = []
    for resource in request.resources:
        result = DescribeConfigsResponse.DescribeConfigsResult(
            error_code=ErrorCode.NONE, error_message=None, resource_type=resource.resource_type,
            resource_name=resource.resource_name, configs=[])
        results.append(result)
        keys = resource.configuration_keys
        try:
            if resource.resource_type == TOPIC_RESOURCE:
                info = await broker.topics.lookup(resource.resource_name)
                if info is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                     f"Topic '{resource.resource_name}' does not exist")
                described = describe_topic_configs(broker, info.configs, keys, include_synonyms)
            elif resource.resource_type == BROKER_RESOURCE:
                _check_broker_name(broker, resource.resource_name)
                described = _describe_broker_configs(broker, keys, include_synonyms)
            else:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Resource type {resource.resource_type} is not supported")
        except KafkaError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
            continue
        result.configs = [
            DescribeConfigsResponse.DescribeConfigsResourceResult(
                name=c.name, value=c.value, read_only=c.read_only,
                is_default=version == 0 and c.config_source == ConfigSource.DEFAULT_CONFIG,
                config_source=c.config_source, is_sensitive=False,
                synonyms=[DescribeConfigsResponse.DescribeConfigsSynonym(
                    name=n, value=v, source=s) for n, v, s in c.synonyms],
                config_type=c.config_type,
                documentation=c.documentation if include_docs else None)
            for c in described
        ]
    return DescribeConfigsResponse(throttle_time_ms=0, results=results)


@handles(DESCRIBE_CONFIGS_KEY, 0, 4)
def handle_describe_configs(ctx, request) -> defer.Deferred[DescribeConfigsResponse]:
    return defer.ensureDeferred(_describe_configs(ctx, request))


def _apply_incremental(current: dict[str, str], changes) -> dict[str, str | None]:
    updated: dict[str, str | None] = dict(current)
    for change in changes:
        name, operation, value = change.name, change.config_operation, change.value
        definition = TOPIC_CONFIGS.get(name)
        if operation == SET:
            updated[name] = value
        elif operation == DELETE:
            updated.pop(name, None)
        elif operation in (APPEND, SUBTRACT):
            if definition is None or definition.type != ConfigType.LIST:
                raise KafkaError(ErrorCode.INVALID_CONFIG,
                                 f"Config '{name}' is not a list; APPEND/SUBTRACT do not apply")
            items = [v for v in (updated.get(name) or "").split(",") if v]
            for item in (value or "").split(","):
                if operation == APPEND and item not in items:
                    items.append(item)
                elif operation == SUBTRACT and item in items:
                    items.remove(item)
            updated[name] = ",".join(items) if items else None
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown config operation {operation}")
    return updated


async def _alter(ctx, request, incremental: bool):
    broker = ctx.broker
    response_type = IncrementalAlterConfigsResponse if incremental else AlterConfigsResponse
    results = []
    for resource in request.resources:
        result = response_type.AlterConfigsResourceResponse(
            error_code=ErrorCode.NONE, error_message=None, resource_type=resource.resource_type,
            resource_name=resource.resource_name)
        results.append(result)
        try:
            if resource.resource_type == BROKER_RESOURCE:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 "Broker configs are read-only in kop; set them on the command line")
            if resource.resource_type != TOPIC_RESOURCE:
                raise KafkaError(ErrorCode.INVALID_REQUEST,
                                 f"Resource type {resource.resource_type} is not supported")
            info = await broker.topics.lookup(resource.resource_name)
            if info is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                 f"Topic '{resource.resource_name}' does not exist")
            if incremental:
                wanted = _apply_incremental(info.configs, resource.configs)
            else:
                wanted = {c.name: c.value for c in resource.configs}
            checked = validate_topic_configs(wanted)
            if not request.validate_only:
                info = await broker.topics.set_configs(info.name, checked)
                broker.partitions.reconfigure_topic(info)
        except KafkaError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
    return response_type(throttle_time_ms=0, responses=results)


@handles(ALTER_CONFIGS_KEY, 0, 2)
def handle_alter_configs(ctx, request) -> defer.Deferred[AlterConfigsResponse]:
    return defer.ensureDeferred(_alter(ctx, request, incremental=False))


@handles(INCREMENTAL_ALTER_CONFIGS_KEY, 0, 1)
def handle_incremental_alter_configs(ctx, request) -> defer.Deferred[IncrementalAlterConfigsResponse]:
    return defer.ensureDeferred(_alter(ctx, request, incremental=True))
