"""The pieces of ``liqwatch demo``: a sample book, a demo executor and a console view."""
