"""``python -m stc`` is the ``stc`` command."""

import sys

from .cli import main

sys.exit(main())
