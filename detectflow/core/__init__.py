"""The pure domain of detectflow: models, normalization, errors, settings,
hookspecs and the plugin manager. Imports no I/O library."""
