"""Tailnet policy: merge ``acl-snippet.hujson`` into a policy without losing a comment.

``hujson`` (parse, check, render), ``merge`` (the pure engine), ``evaluate``
(schema, references and ``tests`` evaluated locally), ``tailscale_api`` and
``headscale_api`` (adapters), ``apply`` (plan then apply per target).
"""
