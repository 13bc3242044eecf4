"""Reading and writing whole images: streams, atomic files, savers."""
