"""Routing and security rules in Istio's shapes: types, validation, cross-resource checks (pure).

``documents`` turns a request body (YAML documents, JSON, ``kind: List``) into validated
``resource.Resource`` values; each kind has its module (``virtual_service``,
``destination_rule``, ``service_entry``, ``gateway``, ``security``, ``request_authentication``,
``ratelimit``); ``ruleset`` indexes the rules in force;
``checks`` finds conflicts and dangling subset references; ``warnings`` lists fields that are
accepted but not enforced. Every error is a ``ConfigError`` naming the field path.
"""
