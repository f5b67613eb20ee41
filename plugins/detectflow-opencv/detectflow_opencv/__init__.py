"""detectflow-opencv: a detectflow provider plugin built on OpenCV's bundled detectors.

The package root stays light (no OpenCV import): detectflow loads
:mod:`detectflow_opencv.plugin` through its entry point, and OpenCV is imported
only when an adapter, the server or the CLI actually detects something.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
