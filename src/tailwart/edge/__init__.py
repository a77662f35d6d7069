"""The public edge: caddy-l4 config, build, local run, demo and deploy."""
