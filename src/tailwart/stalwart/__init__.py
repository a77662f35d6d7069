"""Stalwart v0.16: the data-store file, the object model, and ``inv provision``.

``versions`` pins what tailwart understands (one entry per schema hash), ``schema``
reads the committed extract of the server's object schema, ``desired`` derives the
objects tailwart owns from ``.env``, ``plan`` diffs them against what the server
holds, ``jmap`` talks to the management API and ``apply`` puts the plan into effect.
"""
