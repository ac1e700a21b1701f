import sys

from pccc.cli.main import main

sys.exit(main())
