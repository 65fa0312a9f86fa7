"""The built-in ``oilfs`` storage: an OilFS workspace mounted with FUSE on every host."""
