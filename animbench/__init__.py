"""The top of the house: the `animbench` console script, the only module that imports every stage."""
