"""``inv doctor``: live checks of the backends, edge, DNS, TLS and outbound path.

Each group module exposes ``checks(ctx) -> list[Check]``; ``runner.run`` runs
them in parallel with a timeout each and returns one ``Finding`` per check, in
registry order (stable, so two runs diff cleanly).
"""
