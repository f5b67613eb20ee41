"""Reading cameras: one PyAV decoding thread per camera, sampled at its fps.

:mod:`~detectflow.video.reader` decodes a stream or file and keeps the
newest sample; :mod:`~detectflow.video.fleet` keeps one worker's readers in
step with the camera list; :mod:`~detectflow.video.sampling` and
:mod:`~detectflow.video.options` are the pure parts. The Bytewax side is
:mod:`detectflow.flows.source_video`.
"""
