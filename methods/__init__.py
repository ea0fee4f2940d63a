"""methods: registry of image-animation methods (FOMM, Monkey-Net, ...) built from frame stores."""
