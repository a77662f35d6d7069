"""Integration tests: real servers and binaries, network namespaces, Docker."""
