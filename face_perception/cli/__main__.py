"""``python -m face_perception.cli``: same as the ``face-perception`` command."""
import sys

from face_perception.cli import main

sys.exit(main())
