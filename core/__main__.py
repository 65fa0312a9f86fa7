import sys

from forge_launcher.cli import main

sys.exit(main())
