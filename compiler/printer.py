"""Readable text of the IR (`pplang compile --emit ir`), with loop decisions shown."""

from __future__ import annotations

from pplang.compiler import ir


def expr(e: object) -> str:
    if isinstance(e, ir.Const):
        return repr(e.value)
    if isinstance(e, ir.Var):
        return e.name
    if isinstance(e, ir.Op):
        if len(e.args) == 1:
            return f"({'-' if e.op == 'neg' else e.op + ' ' if e.op == 'not' else ''}{expr(e.args[0])})"
        return f"({expr(e.args[0])} {e.op} {expr(e.args[1])})"
    if isinstance(e, ir.Call):
        return f"{e.fn}({', '.join(expr(a) for a in e.args)})"
    if isinstance(e, ir.HostCall):
        return f"{'network' if e.network else 'host'} {e.name}({arguments(e.args, e.kwargs)})"
    if isinstance(e, ir.Index):
        parts = [(f"{expr(i.lo) if i.lo else ''}:{expr(i.hi) if i.hi else ''}" if isinstance(i, ir.SliceIx)
                  else expr(i)) for i in e.indices]
        return f"{expr(e.base)}[{', '.join(parts)}]"
    if isinstance(e, ir.Vec):
        return f"[{', '.join(expr(x) for x in e.items)}]"
    if isinstance(e, ir.Select):
        return f"({expr(e.then)} if {expr(e.cond)} else {expr(e.orelse)})"
    if isinstance(e, ir.Shape_):
        return f"{expr(e.value)}.shape[{e.axis}]"
    if isinstance(e, ir.Dist):
        text = f"{e.name}({arguments(e.args, e.kwargs)})"
        return f"unscored({text})" if e.unscored else text
    if isinstance(e, ir.DistLogProb):
        return f"log_prob({expr(e.dist)}, {expr(e.value)})"
    if isinstance(e, ir.Enumerate):
        return f"[{expr(e.body)} for {e.var} in support({expr(e.support)})]"
    if isinstance(e, ir.Recover):
        return f"recover_{e.what}({', '.join(expr(a) for a in e.args)})"
    return repr(e)


def arguments(args: tuple, kwargs: tuple) -> str:
    return ", ".join([expr(a) for a in args] + [f"{k}={expr(v)}" for k, v in kwargs])


def index(ix: tuple) -> str:
    return "[" + ", ".join(expr(i) for i in ix) + "]"


def stmts(body: list[ir.Stmt], depth: int) -> list[str]:
    pad = "    " * depth
    out: list[str] = []
    for s in body:
        at = f"  @{s.span.line}" if s.span.line else ""
        if isinstance(s, ir.Let):
            out.append(f"{pad}let {s.name}: {s.value.ty} = {expr(s.value)}{at}")
        elif isinstance(s, ir.Store):
            out.append(f"{pad}store {s.name}{index(s.index)} = {expr(s.value)}{at}")
        elif isinstance(s, ir.Sample):
            ix = index(s.index) if s.index is not None else ""
            via = f" via {s.strategy}" if s.strategy else ""
            out.append(f"{pad}sample {s.address!r} -> {s.name}{ix}: {s.dist.value_ty} ~ {expr(s.dist)}{via}{at}")
        elif isinstance(s, ir.Factor):
            out.append(f"{pad}factor {expr(s.value)}{at}")
        elif isinstance(s, ir.ParamDef):
            out.append(f"{pad}param {s.address!r} -> {s.name}: {s.constraint} = {expr(s.init)}{at}")
        elif isinstance(s, ir.Ret):
            out.append(f"{pad}return {expr(s.value) if s.value is not None else ''}{at}")
        elif isinstance(s, ir.Loop):
            how = "vmap" if s.mode == "vector" else "scan"
            out.append(f"{pad}for {s.var} in range({expr(s.start)}, {expr(s.stop)})  [{how}: {s.reason}]{at}")
            out.extend(stmts(s.body, depth + 1))
        elif isinstance(s, ir.Branch):
            how = "static" if s.static else "select"
            out.append(f"{pad}if {expr(s.cond)}  [{how}]{at}")
            out.extend(stmts(s.then, depth + 1))
            if s.orelse:
                out.append(f"{pad}else")
                out.extend(stmts(s.orelse, depth + 1))
    return out


def function(fn: ir.Function) -> str:
    args = ", ".join(f"{a}: {t}" for a, t in fn.args)
    lines = [f"{fn.kind} {fn.name}({args})"]
    for addr, info in fn.sites.items():
        flags = [info.support, "reparam" if info.reparameterized else "no reparam"]
        if info.enumerable:
            flags.append("enumerable")
        shape = "?" if info.shape is None else ", ".join("?" if d is None else str(d) for d in info.shape)
        lines.append(f"  site {addr!r}: {info.kind}[{shape}] ~ {info.dist} ({', '.join(flags)})")
    lines.extend(stmts(fn.body, 1))
    return "\n".join(lines)
