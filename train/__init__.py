"""star-har training: datasets, window sampling, augmentation, the training loop and evaluation.

This package may import ``model`` and ``realtime.pose`` (to extract poses from users' clips);
nothing outside ``train`` imports it.
"""
