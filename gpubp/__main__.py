"""``python -m gpubp``: the ``gpubp`` command (:mod:`gpubp.cli`)."""
import sys

from .cli import main

sys.exit(main())
