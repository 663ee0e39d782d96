"""``python -m gpubp.gpucheck``: see :mod:`gpubp.gpucheck`."""
import sys

from . import main

sys.exit(main())
