"""Qt widgets of the napari plugin: one module per tool.

They are thin: each builds its fields, calls the GUI-free core
(:mod:`napari_diskimage`, :mod:`napari_diskimage.process`) and shows the
result as layers; long work runs in a worker thread with progress and
cancel.
"""
