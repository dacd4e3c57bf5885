"""ftedge.export: build-time steps that turn a trained checkpoint into a verified bundle."""
