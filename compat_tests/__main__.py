import sys

from compat_tests.cli import main

sys.exit(main())
