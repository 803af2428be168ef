"""Front ends: model files (lark grammar) and decorated Python functions (`ast`), both producing the
surface syntax of `syntax.py`, every node carrying its source span."""
