"""train stage of the alignment-pretraining toolkit."""
