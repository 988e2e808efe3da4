"""Where the checkout's files are, for tests that use them (deploy/, .cache/)."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
