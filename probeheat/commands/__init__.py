"""One module per `probeheat` subcommand.

Each module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Modules here import only the standard library at module level; heavy libraries (torch,
transformers, matplotlib, textual) are imported inside ``run`` so that `probeheat --help`
and `probeheat inspect` start instantly.
"""

COMMANDS = ("run", "probe", "generalize", "steer", "select", "view", "export", "inspect", "verify")
