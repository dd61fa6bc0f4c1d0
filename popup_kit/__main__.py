import sys

from popup_kit.cli import main

sys.exit(main())
