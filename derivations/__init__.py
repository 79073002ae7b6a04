"""Verified Backprop: the executable derivations behind the site.

Three rooms that know nothing of the site:

- ``derivations.reference``: NumPy float64 forward/backward pairs and the model;
- ``derivations.symbolic``: the SymPy claims registry and its verifier;
- ``derivations.figures``: functions that draw the site's figures as SVG text.
"""
