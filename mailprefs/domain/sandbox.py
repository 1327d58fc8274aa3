"""The sandbox that campaign templates run in: Jinja's immutable sandbox, bounded.

Templates come from marketing keys, so they are untrusted code. They run in Jinja's
immutable sandbox, which refuses Python internals at run time; on top of that,
`refuse_unsafe_nodes` refuses at compile time what no mail template needs (underscore
attributes, include, import, extends: there is no loader; macros, recursive loops), and
every render is bounded: what a string operation may build, how much string work and
how many loop items one render may spend, how much output it may write
(`render_bounded`). Compiling and rendering a campaign's fields is
`mailprefs.domain.templating`'s.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from jinja2 import ChainableUndefined, pass_environment, pass_eval_context
from jinja2 import filters as jfilters
from jinja2 import nodes as jnodes
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# A template must not make the worker build gigabytes; `"x" * 10**9` would.
_MAX_REPEAT = 100_000
_MAX_EXPONENT = 64
_MAX_INT_BITS = 4096
_MAX_OUTPUT = 2_000_000  # characters per field and recipient
# Loops that write nothing cost CPU without output: `range(100000)` inside another such
# loop is 10**10 steps. Every loop's items are counted, per field and recipient.
_MAX_ITERATIONS = 10_000
# The per-render counter each {% for %} is rewritten to pass its items through; a name
# templates may not use (refused at compile), set by render_bounded above any attribute.
LOOP_COUNTER = "_mailprefs_loop_items"
# Every string-producing operation (`~`, `+`, `*`, `%`, format, replace, center, join,
# indent, wordwrap, str methods) is checked for the size of its result before it runs:
# none may build more than _MAX_OUTPUT characters. What they build in one render counts
# against _MAX_WORK; wordwrap, slow per character, counts _WRAP_COST per character read.
_MAX_WORK = 20_000_000
_WRAP_COST = 200
_CONCAT = "_mailprefs_concat"  # the filter each `a ~ b` is rewritten to
_work: ContextVar[list[int] | None] = ContextVar("mailprefs_template_work", default=None)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _sized(size: int, work: int | None = None) -> None:
    """Refuse a result of `size` characters before it is built; spend `work`."""
    if size > _MAX_OUTPUT:
        raise SecurityError(f"a string of more than {_MAX_OUTPUT} characters")
    left = _work.get()
    if left is not None:
        left[0] -= size if work is None else work
        if left[0] < 0:
            raise SecurityError("too much string work for one message")


def _replaced_size(text: str, old: str, new: str, count: Any = None) -> int:
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(text) + times * max(0, len(new) - len(old))


def _check_percent(template: str, args: Any) -> None:
    """`"%10s" % x`: widths and precisions written out, never taken from the arguments."""
    total = len(template)
    for width, precision in _PERCENT_SPEC.findall(template):
        if "*" in (width, precision):
            raise SecurityError("a '*' width is not allowed")
        total += int(width or 0) + int(precision or 0)
    values = args if isinstance(args, tuple) else (args,)
    _sized(total + sum(len(str(v)) for v in values))


def _check_braces(template: str, args: Any, kwargs: Any) -> None:
    """`"{:>10}".format(x)`: the same for str.format."""
    total = len(template)
    for _text, _name, spec, _conversion in string.Formatter().parse(template):
        if spec and "{" in spec:
            raise SecurityError("a width taken from an argument is not allowed")
        total += sum(int(n) for n in re.findall(r"\d+", spec or ""))
    values = list(args) + list(kwargs.values())
    _sized(total + sum(len(str(v)) for v in values))


def _joined_size(items: list[Any], separator: str) -> int:
    return sum(len(str(i)) for i in items) + len(separator) * max(0, len(items) - 1)


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    _sized(_replaced_size(str(s), str(old), str(new), count))
    return jfilters.do_replace(eval_ctx, s, old, new, count)


def _center(value: Any, width: int = 80) -> str:
    _sized(max(len(str(value)), int(width)))
    return jfilters.do_center(value, width)


@pass_environment
def _wordwrap(environment: Any, s: Any, width: int = 79, *args: Any, **kwargs: Any) -> str:
    text = str(s)
    _sized(len(text) * 2, work=len(text) * _WRAP_COST)
    return jfilters.do_wordwrap(environment, text, width, *args, **kwargs)


@pass_eval_context
def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is None:
        _sized(_joined_size(items, str(d)))
    result = jfilters.do_join(eval_ctx, items, d, attribute)
    _sized(len(result), work=0)
    return result


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_percent(str(value), kwargs or args)
    return jfilters.do_format(value, *args, **kwargs)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = len(width) if isinstance(width, str) else int(width)
    _sized(len(text) + (text.count("\n") + 1) * pad)
    return jfilters.do_indent(s, width, first, blank)


_BOUNDED_FILTERS = {
    "replace": _replace,
    "center": _center,
    "wordwrap": _wordwrap,
    "join": _join,
    "format": _format,
    "indent": _indent,
}


def _check_str_method(owner: str, name: str, args: tuple[Any, ...], kwargs: Any) -> None:
    """str methods that can grow a string, bounded as the filters are."""
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int):
        _sized(max(len(owner), first))
    elif name == "expandtabs":
        size = first if isinstance(first, int) else kwargs.get("tabsize", 8)
        _sized(len(owner) + owner.count("\t") * max(0, int(size)))
    elif name == "replace" and len(args) >= 2:
        _sized(_replaced_size(owner, str(args[0]), str(args[1]), args[2] if len(args) > 2 else -1))
    elif name == "join":
        if not isinstance(first, list | tuple | str):
            raise SecurityError("join a list, not a generator")
        _sized(_joined_size(list(first), owner))


class TemplateInvalid(Exception):
    """A template that cannot be used: syntax, a sandbox refusal, a render-time error."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, stricter: an unsafe attribute raises instead of quietly
    rendering as an empty string, so the template is refused rather than half-sent."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> Any:
            mapping = args[0] if value.__name__ == "format_map" and args else {}
            _check_braces(template, () if mapping else args, mapping or kwargs)
            return wrapped(*args, **kwargs)

        return bounded

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r}")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > _MAX_REPEAT
                ):
                    raise SecurityError("repetition too large")
            bits = left.bit_length() + right.bit_length() if _big_int(left) else 0
            if _big_int(right) and bits > _MAX_INT_BITS:
                raise SecurityError("number too large")
            if isinstance(left, str | list | tuple) and isinstance(right, int):
                _sized(len(left) * right)
            elif isinstance(right, str | list | tuple) and isinstance(left, int):
                _sized(len(right) * left)
        elif operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        elif operator == "+" and isinstance(left, str | list | tuple) and hasattr(right, "__len__"):
            _sized(len(left) + len(right))
        elif operator == "**" and isinstance(right, int | float):
            base_bits = left.bit_length() if _big_int(left) else 64
            if abs(right) > _MAX_EXPONENT or base_bits * abs(right) > _MAX_INT_BITS:
                raise SecurityError("exponent too large")
        return super().call_binop(context, operator, left, right)


def _big_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def new_sandbox(autoescape: bool) -> Sandbox:
    """A sandbox for campaign templates (HTML ones autoescaped), its filters bounded."""
    env = Sandbox(autoescape=autoescape, undefined=ChainableUndefined, keep_trailing_newline=True)
    # lipsum() writes arbitrary amounts of text and is the usual first step of template
    # injection payloads; nothing in a mail needs it.
    env.globals.pop("lipsum", None)
    env.filters.update(_BOUNDED_FILTERS)
    env.filters[_CONCAT] = _concat(autoescape)
    return env


def refuse_unsafe_nodes(field: str, tree: jnodes.Template) -> None:
    """Refuse, before anything runs, what the sandbox would refuse only if reached."""
    for node in tree.find_all((jnodes.Include, jnodes.Import, jnodes.FromImport, jnodes.Extends)):
        tag = type(node).__name__.lower().replace("fromimport", "from ... import")
        raise TemplateInvalid(field, f"{{% {tag} %}} is not allowed in mail templates")
    # Macros and recursive loops let a few lines of template run for ever (a macro that
    # calls itself twice is 2**n work); mail has no use for either.
    for _ in tree.find_all((jnodes.Macro, jnodes.CallBlock)):
        raise TemplateInvalid(field, "macros are not allowed in mail templates")
    for node in tree.find_all(jnodes.For):
        if node.recursive:
            raise TemplateInvalid(field, "recursive loops are not allowed in mail templates")
    for node in tree.find_all(jnodes.Name):
        if node.name in (LOOP_COUNTER, _CONCAT):
            raise TemplateInvalid(field, f"{node.name!r} is a reserved name")
    for node in tree.find_all(jnodes.Getattr):
        if node.attr.startswith("_"):
            raise TemplateInvalid(field, f"access to {node.attr!r} is not allowed")
    for node in tree.find_all(jnodes.Getitem):
        if isinstance(node.arg, jnodes.Const) and str(node.arg.value).startswith("_"):
            raise TemplateInvalid(field, f"access to {node.arg.value!r} is not allowed")
    for node in tree.find_all(jnodes.Filter):
        if node.name == "attr" and any(
            isinstance(arg, jnodes.Const) and str(arg.value).startswith("_") for arg in node.args
        ):
            raise TemplateInvalid(field, "access to underscore attributes is not allowed")


def count_loop_items(tree: jnodes.Template) -> None:
    """Rewrite every `{% for x in items %}` to `{% for x in <counter>(items) %}`, and
    every `a ~ b` to `(a, b)|<concat>` (sized before it is built)."""
    for node in tree.find_all(jnodes.For):
        counter = jnodes.Name(LOOP_COUNTER, "load", lineno=node.lineno)
        node.iter = jnodes.Call(counter, [node.iter], [], None, None, lineno=node.lineno)
    for parent in list(tree.find_all(jnodes.Node)):
        for field, child in parent.iter_fields():
            if isinstance(child, jnodes.Concat):
                setattr(parent, field, _concat_call(child))
            elif isinstance(child, list):
                child[:] = [_concat_call(c) if isinstance(c, jnodes.Concat) else c for c in child]


def _concat_call(node: jnodes.Concat) -> jnodes.Filter:
    # A filter, not a call: filters are called directly, calls go through the sandbox.
    # The same list: a Concat nested in it is rewritten in place when it is reached.
    parts = jnodes.Tuple(node.nodes, "load", lineno=node.lineno)
    return jnodes.Filter(parts, _CONCAT, [], [], None, None, lineno=node.lineno)


def _concat(html: bool):
    join = markup_join if html else str_join

    def concat(parts: tuple[Any, ...]) -> str:
        _sized(sum(len(str(p)) for p in parts))
        return join(parts)

    return concat


class _LoopBudget:
    """_MAX_ITERATIONS loop items for one render, shared by every loop in it; `range`
    spends from it too (`range(100000)|sum` is a loop as well)."""

    __slots__ = ("left", "paid")

    def __init__(self) -> None:
        self.left = _MAX_ITERATIONS
        # Ranges already spent for, by id (a loop over one is free); holding them keeps
        # their ids from being reused within the render.
        self.paid: dict[int, range] = {}

    def _spend(self, items: int) -> None:
        self.left -= items
        if self.left < 0:
            raise SecurityError(f"more than {_MAX_ITERATIONS} loop iterations")

    def count(self, items: Any) -> Any:
        if id(items) in self.paid:
            return items
        return self._counted(items)

    def _counted(self, items: Any) -> Any:
        for item in items:
            self._spend(1)
            yield item

    def range(self, *args: int) -> range:
        numbers = range(*args)
        self._spend(len(numbers))
        self.paid[id(numbers)] = numbers
        return numbers


def render_bounded(template: Any, context: Mapping[str, Any]) -> str:
    """Render, refusing output beyond _MAX_OUTPUT (a loop can multiply a small template),
    loops beyond _MAX_ITERATIONS items in all and string work beyond _MAX_WORK: each
    message is bounded on its own (a recipient whose data makes it expensive fails alone)."""
    chunks = []
    size = 0
    budget = _LoopBudget()
    names = {
        **context,
        LOOP_COUNTER: budget.count,
        "range": budget.range,
    }
    token = _work.set([_MAX_WORK])
    try:
        for chunk in template.generate(names):
            size += len(chunk)
            if size > _MAX_OUTPUT:
                raise SecurityError(f"output larger than {_MAX_OUTPUT} characters")
            chunks.append(chunk)
    finally:
        _work.reset(token)
    return "".join(chunks)
