"""Starter code and reference solutions of the hands-on exercises, as scripts a reader can run.

Each file runs its exercise in ``main()`` when executed as a script; importing it runs nothing
(so the test suite can import the functions and check them).
"""
