"""The runs: the one step body, processes and schedules, pretraining, finetuning, evaluation, probing, and their plans."""
