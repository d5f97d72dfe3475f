"""What clients discover: SMART configuration, OpenID Connect metadata, CapabilityStatement
security. One place computes the endpoint URLs, so the documents cannot disagree."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .jose import ACCESS_TOKEN_ALGS, ASSERTION_ALGS
from .oidc import provider_for

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
SCOPES_SUPPORTED = ["openid", "fhirUser", "launch/patient", "offline_access", "online_access",
                    "patient/*.cruds", "user/*.cruds", "system/*.cruds",
                    "patient/*.read", "patient/*.write", "user/*.read", "user/*.write",
                    "system/*.read", "system/*.write"]
CAPABILITIES = ["launch-standalone", "client-public", "client-confidential-asymmetric",
                "context-standalone-patient", "sso-openid-connect", "permission-offline",
                "permission-online", "permission-patient", "permission-user", "permission-v1",
                "permission-v2", "authorize-post"]


def endpoints(settings: Settings) -> dict[str, str]:
    """The built-in server's endpoint URLs."""
    issuer = settings.resolved_issuer()
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/auth/jwks",
        "authorization_endpoint": f"{issuer}/auth/authorize",
        "token_endpoint": f"{issuer}/auth/token",
        "revocation_endpoint": f"{issuer}/auth/revoke",
        "introspection_endpoint": f"{issuer}/auth/introspect",
    }


def _external_endpoints(doc: dict[str, Any]) -> dict[str, str]:
    keys = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "revocation_endpoint",
            "introspection_endpoint", "registration_endpoint", "management_endpoint")
    return {k: doc[k] for k in keys if isinstance(doc.get(k), str)}


async def smart_configuration(settings: Settings) -> dict[str, Any]:
    """SMART App Launch 2.0 `.well-known/smart-configuration` for whichever issuer is in use.

    Raises IssuerUnavailable when an external issuer's metadata cannot be fetched.
    """
    if settings.oidc_issuer:
        doc = await provider_for(settings).discovery()
        return {**_external_endpoints(doc),
                "grant_types_supported": doc.get("grant_types_supported", ["authorization_code"]),
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": doc.get("scopes_supported", SCOPES_SUPPORTED),
                "response_types_supported": ["code"],
                "capabilities": ["launch-standalone", "client-public", "permission-v2",
                                 "permission-v1", "permission-patient", "permission-user"]}
    return {
        **endpoints(settings),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def openid_configuration(settings: Settings) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 metadata of the built-in issuer."""
    return {
        **endpoints(settings),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ACCESS_TOKEN_ALGS),
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "revocation_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "introspection_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES_SUPPORTED,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "authorization_response_iss_parameter_supported": True,
    }


def capability_security(settings: Settings) -> dict[str, Any]:
    """CapabilityStatement.rest.security: SMART on FHIR, with the oauth-uris extension."""
    if settings.oidc_issuer:
        cached = provider_for(settings).cached_discovery
        urls = _external_endpoints(cached) if cached else {}
    else:
        urls = endpoints(settings)
    names = {"authorization_endpoint": "authorize", "token_endpoint": "token",
             "revocation_endpoint": "revoke", "introspection_endpoint": "introspect",
             "registration_endpoint": "register", "management_endpoint": "manage"}
    uris = [{"url": names[k], "valueUri": urls[k]} for k in names if k in urls]
    security: dict[str, Any] = {
        "service": [{"coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                     "text": "OAuth2 using SMART-on-FHIR profile (see .well-known/smart-configuration)"}],
        "description": "Bearer tokens (RFC 6750) signed RS256 or ES256; SMART App Launch v2 scopes.",
    }
    if uris:
        security["extension"] = [{"url": OAUTH_URIS, "extension": uris}]
    return security
