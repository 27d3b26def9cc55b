"""The control plane API's OpenAPI 3.0 description, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong"},
        "path": {"type": "string", "description": "the field at fault, e.g. spec.http[0].route[1].weight"},
        "document": {"type": "integer", "description": "0-based index of the document in the request body"},
        "resource": {"type": "string", "description": "Kind namespace/name of the resource at fault"},
    },
}
_RESOURCE = {
    "type": "object",
    "description": "An Istio resource: VirtualService, DestinationRule, ServiceEntry (networking.istio.io/v1), "
    "PeerAuthentication, AuthorizationPolicy, RequestAuthentication (security.istio.io/v1), "
    "RateLimitPolicy (policy.pymesh.io/v1alpha1).",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"type": "string", "example": "networking.istio.io/v1"},
        "kind": {"type": "string", "example": "VirtualService"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string", "default": "default"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                "resourceVersion": {
                    "type": "string",
                    "description": "on input: apply only if the stored resource is still at this version (else 409)",
                },
                "generation": {"type": "integer", "readOnly": True},
                "creationTimestamp": {"type": "string", "readOnly": True},
            },
        },
        "spec": {"type": "object"},
    },
}
_OUTCOME = {
    "type": "object",
    "properties": {
        "version": {"type": "integer", "description": "the config version after the request"},
        "dry_run": {"type": "boolean"},
        "changed": {"type": "boolean"},
        "resources": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string"},
                    "namespace": {"type": "string"},
                    "name": {"type": "string"},
                    "action": {"type": "string", "enum": ["created", "configured", "unchanged", "deleted"]},
                    "resourceVersion": {"type": "string"},
                },
            },
        },
        "warnings": {
            "type": "array",
            "description": "accepted fields the sidecar does not enforce yet",
            "items": {"type": "object", "properties": {"resource": {}, "path": {}, "message": {}}},
        },
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "invalid input",
        401: "a credential is missing (the token, or the sidecar's secret): {error, missing}",
        403: "not allowed (a wrong token or secret, or an identity the sidecar is not entitled to)",
        404: "not found",
        409: "conflict (resourceVersion, or a sidecar id held by a connected sidecar)",
        503: "store unavailable",
    }
    return {str(code): {"description": text[code], **_json({"$ref": "#/components/schemas/Error"})} for code in codes}


_KEY_PARAMS = [
    {
        "name": "kind",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "VirtualService, vs, ...",
    },
    {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
]
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
_DRY_RUN = {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}, "description": "validate only"}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "mesh control plane",
        "version": "1",
        "description": "Routing and security rules in Istio's shapes, pushed to sidecars as versioned snapshots. "
        "With `mesh control --token`, writes, CA signing and the sidecar endpoints need the token (bearer or "
        "meshToken; reads too with --token-reads), and calls about one sidecar also its secret (sidecarSecret).",
    },
    "paths": {
        "/v1/mesh/config": {
            "put": {
                "summary": "Apply resources (create or replace), all or none",
                "parameters": [_DRY_RUN],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/yaml": {"schema": {"type": "string", "description": "one or more YAML documents"}},
                        "application/json": {
                            "schema": {"oneOf": [{"$ref": "#/components/schemas/Resource"}, {"type": "array"}]}
                        },
                    },
                },
                "responses": {"200": {"description": "applied", **_json(_OUTCOME)}, **_errors(400, 409, 503)},
            },
            "get": {
                "summary": "List resources",
                "parameters": [
                    {"name": "kind", "in": "query", "schema": {"type": "string"}},
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": {
                        "description": "resources",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "version": {"type": "integer"},
                                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/Resource"}},
                                },
                            }
                        ),
                    }
                },
            },
        },
        "/v1/mesh/config/{kind}/{namespace}/{name}": {
            "get": {
                "summary": "One resource",
                "parameters": _KEY_PARAMS,
                "responses": {
                    "200": {"description": "the resource", **_json({"$ref": "#/components/schemas/Resource"})},
                    **_errors(404),
                },
            },
            "delete": {
                "summary": "Delete one resource",
                "parameters": [
                    *_KEY_PARAMS,
                    _DRY_RUN,
                    {"name": "resourceVersion", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "deleted", **_json(_OUTCOME)}, **_errors(400, 404, 409, 503)},
            },
        },
        "/v1/mesh/status": {
            "get": {
                "summary": "Every known sidecar (of every live replica with the consul store): snapshot version sent "
                "and applied, last ACK and NACK, the replica serving it",
                "responses": {"200": {"description": "status", **_json({"type": "object"})}},
            }
        },
        "/v1/mesh/topology": {
            "get": {
                "summary": "Who calls whom from the sidecars' metrics: nodes, edges with rps, error_rate, p50_ms, "
                "p99_ms and per-version numbers over the last scrape window, scrape targets (docs/observability.md)",
                "responses": {"200": {"description": "topology", **_json({"type": "object"})}},
            }
        },
        "/v1/mesh/services": {
            "get": {
                "summary": "Registry services with healthy/total instances, namespaces and registered sidecars",
                "responses": {"200": {"description": "services", **_json({"type": "object"})}, **_errors(503)},
            }
        },
        "/v1/mesh/rules": {
            "get": {
                "summary": "Stored rules with their validation state (valid, warnings, invalid), warnings and problem",
                "responses": {"200": {"description": "rules", **_json({"type": "object"})}},
            }
        },
        "/v1/mesh/rollouts": {
            "post": {
                "summary": "Start a canary or blue-green rollout: VirtualService weights shift step by step, judged "
                "by the canary's error rate and p99 from the sidecars' metrics; rolled back on a breach "
                "(docs/control-plane.md, Progressive delivery)",
                "requestBody": {"required": True, **_json({"type": "object"})},
                "responses": {
                    "201": {"description": "the rollout, first step applied", **_json({"type": "object"})},
                    **_errors(400, 409, 503),
                },
            },
            "get": {
                "summary": "Every rollout: spec, state, event log",
                "parameters": [{"name": "namespace", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "rollouts", **_json({"type": "object"})}},
            },
        },
        "/v1/mesh/rollouts/{name}": {
            "get": {
                "summary": "One rollout: spec, state, event log",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "rollout", **_json({"type": "object"})}, **_errors(404)},
            }
        },
        "/v1/mesh/rollouts/{name}/abort": {
            "post": {
                "summary": "Abort a rollout: all traffic back to the stable subset",
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "rollout", **_json({"type": "object"})}, **_errors(400, 404, 503)},
            }
        },
        "/v1/mesh/explain": {
            "get": {
                "summary": "Which rule, route, subset and endpoints a request from a service would get, and why",
                "parameters": [
                    {"name": "source", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "host", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "path", "in": "query", "schema": {"type": "string", "default": "/"}},
                    {"name": "method", "in": "query", "schema": {"type": "string", "default": "GET"}},
                    {"name": "headers", "in": "query", "schema": {"type": "string"}, "description": "k:v,k2:v2"},
                    {"name": "namespace", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "explanation", **_json({"type": "object"})}, **_errors(400)},
            }
        },
        "/v1/mesh/sidecars/{id}": {
            "put": {
                "summary": "Register a sidecar: service, namespace, labels, bootstrap snapshot, hosts asked for, "
                "admin address (host:port, scraped for the topology)",
                "parameters": _ID,
                "requestBody": _json({"type": "object"}),
                "responses": {
                    "200": {
                        "description": "{id, version, secret}: secret (this sidecar's, for X-Mesh-Sidecar-Secret) "
                        "only when newly issued, i.e. unless the current one was presented"
                    },
                    **_errors(400, 401, 403, 409),
                },
            },
            "delete": {
                "summary": "Forget a sidecar",
                "parameters": _ID,
                "responses": {"200": {"description": "forgotten"}},
            },
        },
        "/v1/mesh/sidecars/{id}/demand": {
            "post": {
                "summary": "The sidecar's app asked for a host the snapshot lacks",
                "parameters": _ID,
                "requestBody": _json({"type": "object", "properties": {"host": {"type": "string"}}}),
                "responses": {
                    "200": {"description": "routed now or not, and the snapshot version"},
                    **_errors(400, 404),
                },
            }
        },
        "/v1/mesh/sync/{id}": {
            "get": {
                "summary": "Long poll for a snapshot different from the one held",
                "parameters": [
                    *_ID,
                    {"name": "version", "in": "query", "schema": {"type": "string"}},
                    {"name": "wait", "in": "query", "schema": {"type": "string", "default": "30s"}},
                    {"name": "ack", "in": "query", "schema": {"type": "string"}, "description": "version applied"},
                    {"name": "nack", "in": "query", "schema": {"type": "string"}, "description": "version rejected"},
                    {"name": "error", "in": "query", "schema": {"type": "string"}, "description": "why (with nack)"},
                ],
                "responses": {
                    "200": {"description": "{version, config_version, snapshot}"},
                    "304": {"description": "nothing new within wait"},
                    **_errors(404, 503),
                },
            }
        },
        "/v1/mesh/sync/{id}/ack": {
            "post": {
                "summary": "ACK (error null) or NACK (error set) a snapshot version",
                "parameters": _ID,
                "requestBody": _json(
                    {
                        "type": "object",
                        "properties": {"version": {"type": "string"}, "error": {"type": "string", "nullable": True}},
                    }
                ),
                "responses": {"204": {"description": "recorded"}, **_errors(400, 404)},
            }
        },
        "/v1/mesh/ca/sign": {
            "post": {
                "summary": "Sign a registered sidecar's CSR into a short-lived SPIFFE certificate "
                "(spiffe://<trust-domain>/ns/<namespace>/sa/<service> of its registration, nothing else)",
                "requestBody": _json(
                    {
                        "type": "object",
                        "required": ["sidecar", "csr"],
                        "properties": {
                            "sidecar": {"type": "string", "description": "the registered sidecar id"},
                            "csr": {"type": "string", "description": "PEM certificate signing request"},
                            "ttl": {"type": "string", "description": "lifetime, e.g. 12h (default 24h)"},
                        },
                    }
                ),
                "responses": {
                    "200": {
                        "description": "{identity, cert_chain (PEM, leaf first), trust_bundle (PEM), serial, "
                        "not_before, not_after}"
                    },
                    **_errors(400, 403, 404),
                },
            }
        },
        "/v1/mesh/ca/bundle": {
            "get": {
                "summary": "The trust bundle (the CA roots peers verify against)",
                "parameters": [
                    {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "pem"]}},
                ],
                "responses": {"200": {"description": "{trust_domain, trust_bundle} or PEM with format=pem"}},
            }
        },
    },
    "components": {
        "schemas": {"Error": _ERROR, "Resource": _RESOURCE},
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the control plane's token"},
            "meshToken": {"type": "apiKey", "in": "header", "name": "X-Mesh-Token"},
            "sidecarSecret": {"type": "apiKey", "in": "header", "name": "X-Mesh-Sidecar-Secret"},
        },
    },
}

__all__ = ["OPENAPI"]
