"""synth stage of the alignment-pretraining toolkit."""
