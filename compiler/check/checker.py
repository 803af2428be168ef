"""The checker of one program: its declarations and networks; `lower(name)` returns the IR of one
declaration. Checking and lowering are one walk (see `lowering.py`), so that every IR node is built
from a node whose type is known; every user error raises `PplError` at the offending source."""

from __future__ import annotations

from pplang.compiler import ir
from pplang.compiler.check.lowering import DeclLowering
from pplang.compiler.check.objectives import ObjectiveLowering
from pplang.compiler.check.scopes import expr_span
from pplang.compiler.diagnostics import PplError, did_you_mean, error
from pplang.compiler.frontend import syntax as S
from pplang.stdlib import networks as nets


class Checker:
    """Checks one program; `lower(name)` returns the IR of one declaration."""

    def __init__(self, program: S.Program, hosts: dict[str, object] | None = None):
        self.program = program
        self.src = program.source
        self.hosts = {name: nets.as_network(v) for name, v in (hosts or {}).items()}
        self.decls: dict[str, S.Decl] = {}
        for d in program.decls:
            if d.name in self.decls:
                raise self.err(
                    f"`{d.name}` is declared twice", d.span, hint=f"first declared at {self.decls[d.name].span}"
                )
            self.decls[d.name] = d
        for n in program.networks:
            if n.name in self.decls or n.name in self.hosts:
                where = self.decls[n.name].span if n.name in self.decls else "by the caller (hosts)"
                raise self.err(f"`{n.name}` is declared twice", n.span, hint=f"first declared {where}")
            self.hosts[n.name] = self.network(n)

    def network(self, n: S.NetworkDecl) -> nets.Network:
        """The network a `network name = block(options)` declaration builds; options are int
        literals, lists of them, or activation names."""
        e = n.value
        blocks = ", ".join(f"{b}(...)" for b in nets.BLOCKS)
        if not isinstance(e, S.Call) or e.func not in nets.BLOCKS:
            raise self.err(f"network `{n.name}` must be built from a standard block", expr_span(e),
                           hint=did_you_mean(e.func, nets.BLOCKS) if isinstance(e, S.Call) else None
                           or f"blocks: {blocks}; or bind an equinox module by name from Python")
        cls, names = nets.BLOCKS[e.func]
        if e.args:
            raise self.err(f"`{e.func}` takes its options by name", expr_span(e.args[0]),
                           hint=f"for example {e.func}(out_size=2, hidden=[64, 64], activation=relu); "
                           f"options: {', '.join(names)}")
        options: dict[str, object] = {}
        for k in e.kwargs:
            if k.name not in names:
                raise self.err(f"`{e.func}` has no option `{k.name}`", k.span,
                               hint=did_you_mean(k.name, names) or f"options: {', '.join(names)}")
            options[k.name] = self.network_option(e.func, k)
        if "out_size" not in options:
            raise self.err(f"`{e.func}` needs `out_size`", e.span, hint=f"for example {e.func}(out_size=2, ...)")
        try:
            return cls(**options)
        except ValueError as err:
            raise self.err(f"network `{n.name}`: {err}", e.span, hint="change the block's options") from None

    def network_option(self, block: str, k: S.Keyword) -> object:
        v = k.value
        if k.name in nets.NAMED_OPTIONS:
            choices = nets.NAMED_OPTIONS[k.name]
            if not isinstance(v, S.Name) or v.id not in choices:
                what = "must name an activation" if choices == tuple(nets.ACTIVATIONS) else "must be one of"
                raise self.err(f"`{k.name}` of `{block}` {what}: {', '.join(choices)}", expr_span(v),
                               hint=(did_you_mean(v.id, choices) if isinstance(v, S.Name) else None)
                               or f"for example {k.name}={choices[0]}")
            return v.id
        listed = k.name in nets.LIST_OPTIONS
        if listed and not isinstance(v, S.VectorLit):
            raise self.err(f"`{k.name}` is a list of layer widths", expr_span(v), hint=f"for example {k.name}=[64, 64]")
        items = v.items if listed else [v]
        for x in items:
            if not (isinstance(x, S.Num) and isinstance(x.value, int) and x.value > 0):
                raise self.err(f"`{k.name}` of `{block}` must be a positive int literal", expr_span(x),
                               hint="network sizes are fixed when the file is compiled")
        return tuple(x.value for x in items) if listed else items[0].value

    # ------------------------------------------------------------ helpers

    def err(self, message: str, span: S.Span, **kw: str | None) -> PplError:
        return error(message, span, self.src, **kw)

    def check_all(self) -> dict[str, ir.Function]:
        """Check and lower every declaration."""
        return {d.name: self.lower_objective(d.name) if d.kind == "objective" else self.lower(d.name)
                for d in self.program.decls}

    def lower_objective(self, name: str) -> ir.Function:
        return ObjectiveLowering(self, self.decls[name]).run()

    def lower(self, name: str) -> ir.Function:
        if name not in self.decls:
            raise error(
                f"no model or guide named `{name}` in {self.program.file}",
                hint=did_you_mean(name, self.decls) or f"declared here: {', '.join(self.decls) or 'nothing'}",
            )
        decl = self.decls[name]
        if decl.kind == "objective":
            raise self.err(
                f"`{name}` is an objective, not a model or guide",
                decl.span,
                hint="objectives are used when fitting; name a model or guide here",
            )
        return DeclLowering(self, decl).run()
