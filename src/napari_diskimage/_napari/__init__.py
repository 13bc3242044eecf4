"""The napari side of the plugin, without Qt: reader, writers, samples, the
demo, the labels layers painted into files (napari's private names they
build on are all in ``_compat``) and the layer helpers the widgets
(``.._qt``) build on."""
