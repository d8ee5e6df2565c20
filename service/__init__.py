"""payrelay's HTTP service: app factory, settings, API, store, workers."""
