"""ApiVersions (key 18), versions 0-4.

Answers with exactly the APIs and version ranges registered in kop's handler registry.
An ApiVersions request in a version kop does not speak gets UNSUPPORTED_VERSION with the
supported ranges, written in v0 form (the server does that), so the client can retry lower.
Feature fields (SupportedFeatures, FinalizedFeatures, ...) stay at their defaults and are
therefore not written: old librdkafka fails on default-valued tagged fields.
"""

from __future__ import annotations

from kop.handlers.registry import HandlerRegistry, handles
from wire.generated.error_codes import ErrorCode
from wire.messages import ApiVersionsResponse

API_VERSIONS_KEY = 18


def api_versions_response(registry: HandlerRegistry,
                          error_code: ErrorCode = ErrorCode.NONE) -> ApiVersionsResponse:
    return ApiVersionsResponse(
        error_code=error_code,
        api_keys=[
            ApiVersionsResponse.ApiVersion(
                api_key=h.api_key, min_version=h.min_version, max_version=h.max_version)
            for h in registry.all()
        ],
    )


@handles(API_VERSIONS_KEY, 0, 4)
def handle_api_versions(ctx, request) -> ApiVersionsResponse:
    return api_versions_response(ctx.connection.registry)
