"""An explanation written out: plain text, Markdown or LaTeX, in the tutorial's notation.

One description (:func:`blocks`: sentences, equations and tables of numbers, every symbol in
both a plain-text and a LaTeX spelling) is formatted three ways, so the three always say the
same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from .modes import FUSED, SOFTMAX

if TYPE_CHECKING:  # for annotations only
    from .explanation import Explanation, Factor, Terms

#: Terms of the sum over the next layer's nodes shown per sample (the largest by size; the rest summed).
MAX_TERMS = 6
STYLES = ("text", "markdown", "latex")


class S(NamedTuple):
    """A symbol or expression: its plain-text and its LaTeX spelling."""

    t: str
    x: str

    def __add__(self, other: "S") -> "S":  # type: ignore[override]
        return S(self.t + other.t, self.x + other.x)


#: LaTeX of the symbols longer than a letter: the outputs of the layers between Dense layers
#: (``drop``: a Dropout's, ``bn``: a BatchNorm's) and BatchNorm's own.
_LATEX_BASE = {"drop": r"\mathrm{drop}", "bn": r"\mathrm{bn}", "zhat": r"\hat{z}", "delta": r"\delta"}


def sym(base: str, index: str, layer: Optional[str] = None, primes: int = 0) -> S:
    x = _LATEX_BASE.get(base, base) + "'" * primes
    base += "'" * primes
    if layer is None:
        return S(f"{base}_{index}", f"{x}_{{{index}}}")
    return S(f"{base}_{index}^({layer})", f"{x}_{{{index}}}^{{({layer})}}")


def d(num: S, den: S) -> S:
    """The partial derivative d num / d den (a symbol of several letters in parentheses in plain text)."""
    head = den.t.split("_", 1)[0]
    den_t = f"({den.t})" if len(head) > 1 and " " not in den.t else den.t
    return S(f"d{num.t}/d{den_t}", rf"\frac{{\partial {num.x}}}{{\partial {den.x}}}")


def word(text: str) -> S:
    return S(text, rf"\text{{{text}}}")


def times(*parts: S) -> S:
    return S(" * ".join(p.t for p in parts), r" \cdot ".join(p.x for p in parts))


C0 = S("C_0", "C_0")
C = S("C", "C")


@dataclass
class Block:
    """A sentence, equations (lhs = rhs), a table of numbers and notes."""

    title: str = ""
    lines: List[tuple] = field(default_factory=list)
    headers: List[S] = field(default_factory=list)
    rows: List[List[Union[float, str]]] = field(default_factory=list)
    more: str = ""
    notes: List[str] = field(default_factory=list)


def num(v: Any) -> str:
    return f"{float(v) + 0.0:.6g}"  # + 0.0: no "-0"


# ---- what to say --------------------------------------------------------------------------
class _Names:
    """The symbols of one explanation."""

    def __init__(self, e: Explanation):
        nm = e.name
        self.e, self.nm = e, nm
        lab = nm.layer_label()
        self.lab = lab
        self.param = S(str(nm), nm.latex())
        self.a = sym("a", str(nm.j), lab)
        self.z = sym("z", str(nm.j), lab)
        self.ak = sym(e.reads, str(nm.k), nm.layer_label(nm.l - 1)) if nm.k is not None else None
        self.y = sym("y", str(nm.j))
        # the signals between layer l and l+1, bottom up: a_j^(l), then each layer's output
        self.outs: List[S] = []
        below = self.a
        self.ins: List[S] = []
        seen: Dict[str, int] = {}
        for f in reversed(e.between):
            self.ins.insert(0, below)
            base = "drop" if f.kind == "dropout" else "bn"
            seen[base] = seen.get(base, 0) + 1
            below = sym(base, str(nm.j), lab, primes=seen[base] - 1)  # a second Dropout's output: drop'
            self.outs.insert(0, below)
        self.top = self.outs[0] if self.outs else self.a  # what layer l+1 reads from node j


def _chain_blocks(e: Explanation, N: _Names, samples: int) -> List[Block]:
    nm = e.name
    g = e.activation
    f1, f2, f3 = d(C0, N.a), d(N.a, N.z), d(N.z, N.param)
    dz_dw = N.ak if N.ak is not None else S("1", "1")
    lhs = d(C0, N.param)
    b = Block(f"dC/d{nm}: {nm.describe()}, averaged over n = {e.n} samples "
              f"({'training' if e.training else 'inference'} pass, {e.dtype} on {e.backend}).")
    rows: List[List[Union[float, str]]] = []
    shown = min(samples, e.n)
    if e.head == FUSED:
        dz = d(C0, N.z)
        fused = S(f"a_{nm.j}^(L) - y_{nm.j}", f"a_{{{nm.j}}}^{{(L)}} - y_{{{nm.j}}}")
        b.lines += [(lhs, times(f1, f2, f3)), (None, times(dz, f3)), (None, times(S(f"({fused.t})", rf"({fused.x})"),
                                                                                    dz_dw))]
        b.notes.append(f"The {g} output with the {e.loss} loss is one fused factor: dC_0/dz_j^(L) = a_j^(L) - y_j "
                       f"(for targets that sum to 1 per sample; a_j sum_r y_r - y_j in general), computed without "
                       f"its two factors dC_0/da_j^(L) and da_j^(L)/dz_j^(L), which may overflow.")
        b.headers = [word("sample"), N.a, N.y, S(f"{dz.t} (fused)", rf"{dz.x}\ \text{{(fused)}}"), f3, lhs]
        for i in range(shown):
            rows.append([i + 1, e.a[i], e.y[i], e.dC_dz[i], e.dz_dw[i], e.per_sample[i]])
    elif e.head == SOFTMAX:
        r = sym("a", "r", "L")
        two = "2" if e.loss != "mse" else "(2/m)"
        b.lines += [(lhs, times(S(f"sum_r {d(C0, r).t}", rf"\sum_r {d(C0, r).x}"), d(r, N.z), f3)),
                    (None, S(f"sum_r {two} (a_r^(L) - y_r) a_r^(L) ([r = {nm.j}] - {N.a.t}) * {dz_dw.t}",
                             rf"\sum_r {two} (a_r^{{(L)}} - y_r)\, a_r^{{(L)}} ([r = {nm.j}] - {N.a.x}) \cdot {dz_dw.x}"))]
        b.notes.append("The softmax output: every a_r^(L) depends on z_j^(L), so dC_0/dz_j^(L) contracts the row of "
                       "dC_0/da_r^(L) with the Jacobian's column da_r^(L)/dz_j^(L) = a_r ([r = j] - a_j).")
        b.headers = [word("sample"), N.a, N.y, d(C0, N.z), f3, lhs]
        for i in range(shown):
            rows.append([i + 1, e.a[i], e.y[i], e.dC_dz[i], e.dz_dw[i], e.per_sample[i]])
    else:
        gp = S(f"g'({N.z.t})", rf"g'({N.z.x})")
        if e.head is not None:
            two = "2" if e.loss != "mse" else "(2/m)"
            first = S(f"{two} ({N.a.t} - {N.y.t})", rf"{two} ({N.a.x} - {N.y.x})")
        else:
            first = f1
        b.lines += [(lhs, times(f1, f2, f3)), (None, times(first, gp, dz_dw))]
        what = "none: a = z, g' = 1" if g == "identity" else g
        b.notes.append(f"g^({N.lab}) = {what}" + ("; m = the number of output nodes" if e.loss == "mse" and e.head else ""))
        b.headers = [word("sample")] + ([N.a, N.y] if e.head is not None else []) + [f1, f2, f3, lhs]
        for i in range(shown):
            rows.append([i + 1] + ([e.a[i], e.y[i]] if e.head is not None else [])
                        + [e.dC_da[i], e.da_dz[i], e.dz_dw[i], e.per_sample[i]])
    if e.below and N.ak is not None:
        b.notes.append(f"{N.ak.t}: what layer {N.lab} reads from node {nm.k} of layer {nm.layer_label(nm.l - 1)}, "
                       f"after {', '.join(e.below)}.")
    b.rows = rows
    if e.n > shown:
        b.more = f"({e.n - shown} more sample{'s' if e.n - shown != 1 else ''})"
    return [b]


def _terms_block(e: Explanation, N: _Names, samples: int) -> Block:
    """The sum over the next layer's nodes, as the tutorial writes it: its nodes are j there, the
    node explained here is its number."""
    t: Terms = e.terms
    nm = e.name
    up = nm.layer_label(t.l)
    target = N.top
    aj, zj = sym("a", "j", up), sym("z", "j", up)
    wj = sym("w", f"j{nm.j}" if nm.j < 10 else f"j,{nm.j}", up)
    lhs = d(C0, target)
    b = Block(f"What puts the back in backprop: {lhs.t} sums over the {t.w.size} nodes j of layer {up}.")
    if t.mode == FUSED:
        b.lines += [(lhs, S(f"sum_j {d(C0, zj).t} * {d(zj, target).t}", rf"\sum_j {d(C0, zj).x} {d(zj, target).x}")),
                    (None, S(f"sum_j (a_j^(L) - y_j) * {wj.t}", rf"\sum_j (a_j^{{(L)}} - y_j)\, {wj.x}"))]
        b.notes.append("Layer L's fused head gives dC_0/dz_j^(L) = a_j^(L) - y_j directly.")
        cols = [d(C0, zj)]
    elif t.mode == SOFTMAX:
        b.lines += [(lhs, S(f"sum_j {d(C0, zj).t} * {wj.t}", rf"\sum_j {d(C0, zj).x}\, {wj.x}")),
                    (d(C0, zj), S("sum_r dC_0/da_r^(L) a_r^(L) ([r = j] - a_j^(L))",
                                  r"\sum_r \frac{\partial C_0}{\partial a_r^{(L)}} a_r^{(L)} ([r = j] - a_j^{(L)})"))]
        cols = [d(C0, aj), d(C0, zj)]
    else:
        b.lines += [(lhs, S(f"sum_j {d(C0, aj).t} * {d(aj, zj).t} * {d(zj, target).t}",
                            rf"\sum_j {d(C0, aj).x} {d(aj, zj).x} {d(zj, target).x}")),
                    (None, S(f"sum_j {d(C0, aj).t} * g'(z_j^({up})) * {wj.t}",
                             rf"\sum_j {d(C0, aj).x}\, g'(z_j^{{({up})}})\, {wj.x}"))]
        cols = [d(C0, aj), S(f"g'(z_j^({up}))", rf"g'(z_j^{{({up})}})")]
    b.headers = [word("sample"), word("j")] + cols + [wj, word("term")]
    rows: List[List[Union[float, str]]] = []
    for s in range(min(samples, e.n)):
        prod = t.products[s]
        order = np.argsort(-np.abs(prod), kind="stable")
        for i in sorted(order[:MAX_TERMS]):
            if t.mode == FUSED:
                vals: List[Union[float, str]] = [t.dC_dz[s, i]]
            elif t.mode == SOFTMAX:
                vals = [t.dC_da[s, i], t.dC_dz[s, i]]
            else:
                vals = [t.dC_da[s, i], t.da_dz[s, i]]
            rows.append([s + 1, i + 1] + vals + [t.w[i], prod[i]])
        rest = order[MAX_TERMS:]
        if rest.size:
            rows.append([s + 1, f"{rest.size} more"] + [""] * len(cols) + ["", float(prod[rest].sum())])
        rows.append([s + 1, "sum"] + [""] * len(cols) + ["", t.total[s]])
    b.rows = rows
    if e.n > samples:
        b.more = f"({e.n - samples} more sample{'s' if e.n - samples != 1 else ''})"
    return b


def _factor_block(e: Explanation, N: _Names, pos: int, samples: int) -> Block:
    f: Factor = e.between[pos]
    nm = e.name
    out, inp = N.outs[pos], N.ins[pos]
    b = Block(f"{f.layer} between layer {N.lab} and layer {nm.layer_label(nm.l + 1)} (node {nm.j}): its backward "
              "pass turns the signal at its output into the signal at its input.")
    shown = min(samples, e.n)
    if f.kind == "dropout":
        if "mask" not in f.parts:
            b.lines += [(out, inp), (d(C0, inp), d(C0, out))]
            b.notes.append("Inference (or p = 0): dropout is the identity.")
            b.headers = [word("sample"), d(C0, out), d(C0, inp)]
            b.rows = [[i + 1, f.dout[i], f.din[i]] for i in range(shown)]
        else:
            m = S(f"m_{nm.j}/(1 - p)", rf"\frac{{m_{{{nm.j}}}}}{{1 - p}}")
            b.lines += [(out, times(inp, m)), (d(C0, inp), times(d(C0, out), m))]
            b.notes.append(f"m_{nm.j} = 0 where dropped (probability p = {f.parts['p']:g}), else 1, per sample; the "
                           "forward pass's mask" + (", applied inside the activation pass below it." if f.fused else "."))
            b.headers = [word("sample"), d(C0, out), m, d(C0, inp)]
            b.rows = [[i + 1, f.dout[i], f.parts["mask"][i], f.din[i]] for i in range(shown)]
    else:
        p = f.parts
        j = nm.j
        zh, delta = sym("zhat", str(j)), sym("delta", str(j))
        affine = S(f"gamma_{j} zhat_{j} + beta_{j}", rf"\gamma_{{{j}}} \hat{{z}}_{{{j}}} + \beta_{{{j}}}")
        gp = S(f"g'({affine.t})", rf"g'({affine.x})")
        coef = S(f"gamma_{j} / sqrt(sigma_{j}^2 + eps)", rf"\frac{{\gamma_{{{j}}}}}{{\sqrt{{\sigma_{{{j}}}^2 + \epsilon}}}}")
        b.lines += [(zh, S(f"({inp.t} - mu_{j}) / sqrt(sigma_{j}^2 + eps)",
                           rf"\frac{{{inp.x} - \mu_{{{j}}}}}{{\sqrt{{\sigma_{{{j}}}^2 + \epsilon}}}}")),
                    (out, S(f"g({affine.t})", rf"g({affine.x})")),
                    (delta, times(d(C0, out), gp))]
        if f.training:
            lhs = S(f"n dC/d{d(C0, inp).t.split('/d', 1)[1]}", rf"n \frac{{\partial C}}{{\partial {inp.x}}}")
            b.lines.append((lhs, S(f"{coef.t} ({delta.t} - mean_i {delta.t} - {zh.t} mean_i {delta.t} {zh.t})",
                                   rf"{coef.x} \left({delta.x} - \frac{{1}}{{n}}\sum_i {delta.x} - {zh.x} \frac{{1}}{{n}}"
                                   rf"\sum_i {delta.x} {zh.x}\right)")))
            b.notes.append(f"Training: mu_{j} and sigma_{j} are the batch's, so every sample's {inp.t} moves every "
                           f"sample's zhat_{j}; gamma_{j} = {num(p['gamma'])}, 1/sqrt(sigma_{j}^2 + eps) = "
                           f"{num(p['inv_std'])}, mean_i delta_{j} = {num(p['mean_delta'])}, mean_i delta_{j} zhat_{j} = "
                           f"{num(p['mean_delta_zhat'])}; g = {p['activation']}.")
        else:
            lhs = d(C0, inp)
            b.lines.append((lhs, times(coef, delta)))
            b.notes.append(f"Inference: mu_{j} and sigma_{j}^2 are the running statistics; gamma_{j} = "
                           f"{num(p['gamma'])}, 1/sqrt(running_var_{j} + eps) = {num(p['inv_std'])}; g = {p['activation']}.")
        b.headers = [word("sample"), d(C0, out), gp, delta, zh, lhs]
        b.rows = [[i + 1, f.dout[i], p["g'(y)"][i], p["delta"][i], p["zhat"][i], f.din[i]] for i in range(shown)]
    return b


def _average_block(e: Explanation, N: _Names) -> Block:
    lhs = d(C, N.param)
    rhs = S(f"(1/n) sum_i dC_0^(i)/d{N.param.t}", rf"\frac{{1}}{{n}} \sum_i \frac{{\partial C_0^{{(i)}}}}{{\partial {N.param.x}}}")
    b = Block(f"Averaged over the n = {e.n} samples (what gradient descent uses):")
    if e.penalty:  # the L2 penalty (lambda/2n) sum ||W||^2 adds (lambda/n) w to dC/dw
        rhs = S(f"{rhs.t} + (lambda/n) {N.param.t}", rf"{rhs.x} + \frac{{\lambda}}{{n}} {N.param.x}")
        mean = e.value - e.penalty
        pen = num(e.penalty) if e.penalty > 0 else f"({num(e.penalty)})"
        b.lines += [(lhs, rhs), (None, S(f"{num(mean)} + {pen}", f"{num(mean)} + {pen}")),
                    (None, S(num(e.value), num(e.value)))]
    else:
        b.lines += [(lhs, rhs), (None, S(num(e.value), num(e.value)))]
    lab, below = N.lab, e.name.layer_label(e.name.l - 1)
    what = (f"(1/n) sum_rows Delta^({lab}), entry {e.name.j}" if e.name.is_bias else
            f"(1/n) Delta^({lab})T A^({below}), entry [{e.name.j}, {e.name.k}]")
    if e.penalty:
        what += " + (lambda/n) W"
    b.notes.append(f"The network's batched pass, {what}: {num(e.batched)}.")
    if e.coupled:
        b.notes.append("A BatchNorm above this layer couples the samples (training mode): each sample's numbers are "
                       "n dC/d(its row), as MATH.md defines the signal; their average is dC/dw all the same.")
    return b


def blocks(e: "Explanation", samples: int) -> List[Block]:
    N = _Names(e)
    out = _chain_blocks(e, N, samples)
    if e.terms is not None:
        out.append(_terms_block(e, N, samples))
        for pos in range(len(e.between)):
            out.append(_factor_block(e, N, pos, samples))
    out.append(_average_block(e, N))
    return out


# ---- how to write it ---------------------------------------------------------------------
def _cell(v: Union[float, str, int]) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return num(v)


def _text(bs: Sequence[Block]) -> str:
    out: List[str] = []
    for b in bs:
        if b.title:
            out.append(b.title)
        prev = None
        for lhs, rhs in b.lines:
            lhs = lhs or prev
            pad = " " * len(lhs.t) if lhs is prev else lhs.t
            out.append(f"  {pad} = {rhs.t}")
            prev = lhs
        if b.headers:
            cells = [[h.t for h in b.headers]] + [[_cell(v) for v in row] for row in b.rows]
            width = [max(len(r[c]) for r in cells) for c in range(len(b.headers))]
            for r in cells:
                out.append("  " + "  ".join(v.rjust(w) for v, w in zip(r, width)))
        if b.more:
            out.append("  " + b.more)
        out += ["  " + n for n in b.notes]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _markdown(bs: Sequence[Block]) -> str:
    out: List[str] = []
    for b in bs:
        if b.title:
            out += [b.title, ""]
        if b.lines:
            eq = []
            prev = None
            for lhs, rhs in b.lines:
                eq.append(f"{'' if lhs is None else lhs.x} &= {rhs.x}")
                prev = lhs or prev
            out += ["$$\\begin{aligned}" + r" \\ ".join(eq) + "\\end{aligned}$$", ""]
        if b.headers:
            out.append("| " + " | ".join(f"${h.x}$" for h in b.headers) + " |")
            out.append("|" + "---:|" * len(b.headers))
            out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in b.rows]
            out.append("")
        if b.more:
            out += [b.more, ""]
        out += [f"*{n}*" + "\n" for n in b.notes]
    return "\n".join(out).rstrip() + "\n"


def _latex(bs: Sequence[Block]) -> str:
    rows: List[str] = []
    for b in bs:
        if b.title:
            rows.append(rf"\text{{{_latex_text(b.title)}}} &")
        for lhs, rhs in b.lines:
            rows.append(f"{'' if lhs is None else lhs.x} &= {rhs.x}")
        if b.headers:
            table = [" & ".join(h.x for h in b.headers)] + [" & ".join(_cell(v) for v in row) for row in b.rows]
            rows.append(r"& \begin{array}{" + "r" * len(b.headers) + "}" + r" \\ ".join(table) + r"\end{array}")
        if b.more:
            rows.append(rf"& \text{{{_latex_text(b.more)}}}")
        rows += [rf"& \text{{{_latex_text(n)}}}" for n in b.notes]
    return "$$\\begin{aligned}" + " \\\\\n".join(rows) + "\\end{aligned}$$"


_LATEX_TEXT = {"\\": r"\backslash ", "_": r"\_", "^": r"\^{}", "%": r"\%", "&": r"\&", "#": r"\#", "{": r"\{",
               "}": r"\}", "$": r"\$"}


def _latex_text(s: str) -> str:
    """``s`` safe inside \\text{...}."""
    return "".join(_LATEX_TEXT.get(ch, ch) for ch in s)


def render(e: Explanation, samples: int = 3, style: str = "text") -> str:
    """``e`` written out with the numbers of its first ``samples`` samples (see the module docstring)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 0:
        raise ValueError(f"samples must be an int >= 0 (how many samples to show); got {samples!r}")
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}; got {style!r}")
    bs = blocks(e, int(samples))
    return {"text": _text, "markdown": _markdown, "latex": _latex}[style](bs)
