"""Data files: raw readers, the HDF5 data file, the tokenized feature cache."""
