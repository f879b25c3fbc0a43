"""Where the tests find the repository and its real recordings (one definition for all)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "data" / "speech"  # real recordings with their transcripts
LIBRIVOX = SPEECH / "librivox"
