"""The expression parser's parts, by concern: ``errors`` (rendering refusals with carets),
``ir`` (the immutable tree, its printer and builder) and ``convert`` (text to IR through a
whitelist). Import them from :mod:`verigrad.parse`, which adds the registry's vocabulary.
"""
