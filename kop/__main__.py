import sys

from kop.cli import main

sys.exit(main())
