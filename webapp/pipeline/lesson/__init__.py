"""Lesson production (issue 12): even loudness, chapters and tags in the files, a whole course
at once, read-along pages and the round-trip check of what a voice produced.

Everything here works on finished ``SynthesisResult``s and plain data; no UI imports."""
