"""Analyses behind the reports and pages: pure computation on models and checkpoints (no UI).

- :mod:`.table1`: Table 1 from the checkpoint JSONs, the goals, the schedules.
- :mod:`.inspect`: what a trained distorted-MNIST model does on an image (θ, grid, region, probabilities).
- :mod:`.addition`: whether each transformer of the MNIST-addition model takes one digit.
- :mod:`.cub`: which bird parts the CUB attention boxes hit.
- :mod:`.paired`: two models on one test set, McNemar's exact test.
"""
