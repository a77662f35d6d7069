"""tailwart's tests: a package, so test modules import the shared helpers in
``tests.support`` by their full names and mypy checks all of them in one run."""
