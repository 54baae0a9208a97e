"""Reading migration reports back: check (load), timeline, text (summary), picture (plot).

``plot`` imports matplotlib only when it draws; the rest is pure and has no dependencies.
"""
