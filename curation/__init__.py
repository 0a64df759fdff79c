"""curation stage of the alignment-pretraining toolkit."""
