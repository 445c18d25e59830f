"""Cooperative stand-ins for stdlib modules, one module per stdlib target.

Each module declares ``__implements__``: the names it replaces in the stdlib module of the
same name. ``greenloop.patch_all()`` installs them; they are also usable directly.
"""
