"""evals stage of the alignment-pretraining toolkit."""
