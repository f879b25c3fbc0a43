"""Text for speech: normalisation (numbers, units, formulas), lexicon, sentence splitting."""
