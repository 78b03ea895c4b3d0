"""Training presets, packaged as ``star_har.configs`` (found with :func:`star_har.files.packaged_file`)."""
