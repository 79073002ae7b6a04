"""Chapter experiments: the measurements behind the pages' figures, tables and conclusions.

Built only on the reference operations and backward passes of
:mod:`derivations.reference`: no experiment differentiates by hand what a reference
backward pass computes. Experiments drawn at random take their seeds as arguments, so a
page can state a conclusion over many seeds and show its spread.
"""
