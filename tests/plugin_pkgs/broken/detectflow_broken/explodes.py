raise RuntimeError("this plugin fails on import")
