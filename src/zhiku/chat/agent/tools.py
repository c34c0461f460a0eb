"""The agent's built-in tools, all safe on a shared machine: a calculator, knowledge-base search, the time.

There is deliberately no shell, file or network tool.
"""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import math
import operator
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_EXPRESSION_CHARS = 500
MAX_INT_BITS = 4096          # bigger integers are refused: a "calculator" must not eat the CPU
MAX_EXPONENT = 10_000
MAX_RESULT_CHARS = 2000


class ToolError(Exception):
    """A tool refused its arguments or failed; the message goes back to the model as the result."""


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    run: Callable[[dict[str, Any]], Awaitable[str]]

    def spec(self) -> dict[str, Any]:
        """The OpenAI `tools` entry."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}

    def describe(self) -> str:
        """One line for a text prompt: name, description, arguments."""
        props = self.parameters.get("properties", {})
        args = ", ".join(f'"{k}": {v.get("type", "string")}' for k, v in props.items())
        return f"{self.name}: {self.description} Arguments: {{{args}}}"

    def describe_input(self) -> str:
        """One line for the JSON protocol, where a tool's input is one string."""
        main = self.main_argument or next(iter(self.parameters.get("properties", {})), None)
        hint = self.parameters.get("properties", {}).get(main, {}).get("description", "") if main else ""
        optional = "" if self.main_argument else " (optional)"
        return f"{self.name}: {self.description} Input: {hint or 'none'}{optional}."

    @property
    def main_argument(self) -> str | None:
        """The argument a bare (non-JSON) input is taken as, when the tool has exactly one required."""
        required = self.parameters.get("required", [])
        return required[0] if len(required) == 1 else None

    def check(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validate arguments against the schema's names, required keys and basic types."""
        props: dict[str, Any] = self.parameters.get("properties", {})
        unknown = set(arguments) - set(props)
        if unknown:
            raise ToolError(f"{self.name}: unknown argument(s) {', '.join(sorted(unknown))}; "
                            f"expected {', '.join(props) or 'none'}")
        for key in self.parameters.get("required", []):
            if key not in arguments:
                raise ToolError(f"{self.name}: missing argument '{key}'")
        types: dict[str, type | tuple[type, ...]] = {"string": str, "integer": int, "number": (int, float)}
        for key, value in arguments.items():
            want = types.get(props[key].get("type", ""))
            if want is not None and not isinstance(value, want):
                raise ToolError(f"{self.name}: argument '{key}' must be a {props[key]['type']}")
        return arguments


# calculator --------------------------------------------------------------------------------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "floor": math.floor, "ceil": math.ceil,
    "exp": math.exp, "log": math.log, "log10": math.log10, "log2": math.log2, "sin": math.sin,
    "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "min": min, "max": max, "factorial": math.factorial, "radians": math.radians, "degrees": math.degrees,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
_REPLACE = {"^": "**", "×": "*", "÷": "/", "，": ",", "（": "(", "）": ")", "−": "-"}


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError(f"result too large (over {MAX_INT_BITS} bits)")
    if isinstance(value, float) and math.isinf(value):
        raise ToolError("result overflows")
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ToolError(f"exponent too large (limit {MAX_EXPONENT})")
            if isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and left.bit_length() * right > MAX_INT_BITS:
                raise ToolError(f"result too large (over {MAX_INT_BITS} bits)")
        if isinstance(node.op, ast.Mult) and isinstance(left, int) and isinstance(right, int) \
                and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise ToolError(f"result too large (over {MAX_INT_BITS} bits)")
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords:
        args = [_eval(a) for a in node.args]
        if node.func.id == "factorial" and (not args or not isinstance(args[0], int) or args[0] > 500):
            raise ToolError("factorial takes an integer up to 500")
        return _check_size(_FUNCTIONS[node.func.id](*args))
    raise ToolError(f"not allowed in a calculation: {ast.unparse(node)}")


def calculate(expression: str) -> str:
    """Evaluate arithmetic safely: parsed with `ast`, numbers and a few math functions only."""
    expr = expression.strip()
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise ToolError(f"expression too long (limit {MAX_EXPRESSION_CHARS} characters)")
    for old, new in _REPLACE.items():
        expr = expr.replace(old, new)
    expr = expr.rstrip("=").strip()
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError as e:
        raise ToolError(f"cannot parse '{expression}': {e.msg}") from e
    try:
        value = _eval(tree)
    except ZeroDivisionError as e:
        raise ToolError("division by zero") from e
    except (ValueError, OverflowError, TypeError) as e:
        raise ToolError(f"cannot compute '{expression}': {e}") from e
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def calculator_tool() -> Tool:
    async def run(args: dict[str, Any]) -> str:
        return calculate(str(args["expression"]))

    return Tool("calculator", "Evaluate an arithmetic expression, e.g. (3 + 4) * 2 or sqrt(2) ** 3.",
                {"type": "object", "properties": {"expression": {"type": "string",
                                                                 "description": "the arithmetic expression"}},
                 "required": ["expression"]}, run)


# date and time -----------------------------------------------------------------------------------------

def current_time(timezone: str | None = None) -> str:
    try:
        tz = ZoneInfo(timezone) if timezone else None
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ToolError(f"unknown time zone '{timezone}'") from e
    now = dt.datetime.now(tz).astimezone(tz) if tz else dt.datetime.now().astimezone()
    return now.strftime("%A %Y-%m-%d %H:%M:%S %Z (UTC%z)")


def time_tool() -> Tool:
    async def run(args: dict[str, Any]) -> str:
        return current_time(args.get("timezone"))

    return Tool("current_time", "The current date, weekday and time.",
                {"type": "object", "properties": {"timezone": {
                    "type": "string", "description": "optional IANA time zone, e.g. Asia/Shanghai"}},
                 "required": []}, run)


# knowledge-base search ---------------------------------------------------------------------------------

Search = Callable[[str, str], list[Any]]  # (kb name, query) -> hits


def kb_search_tool(search: Search, default_kb: str | None, names: list[str]) -> Tool:
    async def run(args: dict[str, Any]) -> str:
        kb = args.get("knowledge_base") or default_kb
        if not kb:
            raise ToolError("say which knowledge base to search: " + (", ".join(names) or "none exist"))
        hits = await asyncio.to_thread(search, kb, str(args["query"]))
        if not hits:
            return "no relevant passages found"
        return "\n".join(f"[{i}] ({h.document}) {' '.join(h.text.split())[:400]}" for i, h in enumerate(hits, 1))

    where = f" Default knowledge base: {default_kb}." if default_kb else ""
    available = f" Available: {', '.join(names)}." if names else ""
    return Tool("kb_search", "Search a local knowledge base for passages about a topic." + where + available,
                {"type": "object", "properties": {
                    "query": {"type": "string", "description": "what to look for"},
                    "knowledge_base": {"type": "string", "description": "knowledge base name (optional)"}},
                 "required": ["query"]}, run)


def truncate(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
