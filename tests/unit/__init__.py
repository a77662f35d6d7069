"""Unit tests: no root, no servers (real tools they use skip when missing)."""
