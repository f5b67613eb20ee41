"""``python -m detectflow_opencv`` is the ``detectflow-opencv`` command."""

from detectflow_opencv.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
