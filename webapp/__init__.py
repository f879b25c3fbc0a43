"""Speech Studio: offline-first speech synthesis, live captions and quality evaluation."""

__version__ = "0.1.0"
