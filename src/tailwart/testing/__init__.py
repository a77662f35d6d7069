"""Test doubles that ship with tailwart because ``inv demo`` runs them: not part of what
tailwart deploys. The tests use them too.

- ``standin``: a stand-in for Stalwart's mail listeners, requiring PROXY v2 like Stalwart.
"""
