"""`python -m pplang.cli`."""

import sys

from pplang.cli import main

sys.exit(main())
