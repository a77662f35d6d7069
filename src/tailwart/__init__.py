"""tailwart: deploy Stalwart as a public caddy-l4 edge and a tailnet-only mailbox."""

__version__ = "0.1.0"
