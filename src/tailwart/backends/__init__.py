"""The shared backends (Postgres, Redis, Garage): plan and apply for ``inv bootstrap``.

Each backend module inspects what exists and returns ``Step`` values; nothing
changes until the whole plan is known and free of refusals.
"""
