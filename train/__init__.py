"""star-har training: datasets, window sampling, augmentation, the training loop and evaluation.

This package may import ``model`` and the bottom modules (``star_har.pose`` extracts poses from clips);
nothing outside ``train`` imports it.
"""
