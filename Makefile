# Convenience aliases for the README's two commands.
.PHONY: serve test bench lint
serve:
	bash scripts/studio.sh serve
test:
	bash scripts/studio.sh test
bench:
	bash scripts/studio.sh python bench/tts.py --browser
lint:
	bash scripts/studio.sh python -m ruff check webapp tests bench
