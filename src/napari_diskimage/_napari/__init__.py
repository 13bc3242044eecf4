"""The napari side of the plugin, without Qt: reader, writers, samples and
the layer helpers the widgets (``.._qt``) build on."""
