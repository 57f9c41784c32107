"""Studies and reports of the MUNet bundle on BUSI (not part of the product): see research/README.md."""
