"""Shipped checkpoints, packaged as ``star_har.assets`` (found with :func:`star_har.files.packaged_file`)."""
