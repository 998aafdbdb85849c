"""Read a tool-call argument the way the reference's ``eval()`` reads it, without executing it.

The released rollout (Mini-o3 @ 8654dbf, ``verl/workers/rollout/vllm_rollout/vllm_async_engine.py``,
``AsyncvLLMEngine.process_tool_call``) passes the bbox text to ``eval()`` and shows the model
``str(exception)``. ``evaluate`` gives the same value or raises the same exception, and runs nothing:

* the text is compiled, never run, as ``eval()`` compiles it (leading spaces and tabs stripped,
  filename ``<string>``), so syntax errors carry ``eval()``'s messages;
* literal values (numbers, strings, bytes, ``None``/``True``/``False``/``...``, lists, tuples,
  sets, dicts, unary ``+``/``-``) are built in ``eval()``'s order, with its errors (unhashable
  keys, bad unary operands);
* a name the reference cannot resolve raises its ``NameError``; a name it does resolve (a builtin,
  a global of ``vllm_async_engine.py``, a local of ``process_tool_call``) reads as ``Resolved``,
  refused (``NAME_REFUSED``) where its value would be used;
* any other expression (operator, call, attribute, subscript, comparison, comprehension, f-string
  field, starred item, lambda, ...) is refused (``CODE_REFUSED``) once the operands the reference
  evaluates first have been read, so an earlier ``NameError`` still wins. This is the one deliberate
  difference: the reference would compute ``[0.1+0.2, ...]``.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from dataclasses import dataclass

#: Shown to the model instead of running code (the reference would evaluate it).
CODE_REFUSED = "the grounding argument must be written with literal values; code is not evaluated: {code}"
#: Shown to the model when it uses the value of a name the reference resolves.
NAME_REFUSED = "the grounding argument must be written with literal values; the name {name!r} is not evaluated"
#: Shown when the argument nests deeper than this reader recurses.
TOO_DEEP = "the grounding argument is nested too deeply"
#: The compiler's cut-over to item-by-item set/dict building (CPython ``STACK_USE_GUIDELINE``).
_STACK_USE_GUIDELINE = 30
_SHOWN_CODE = 80

#: Globals of the reference module (its imports, functions and classes) and of every module.
_ENGINE_GLOBALS = frozenset("""
    os re time io asyncio logging json AsyncGenerator contextmanager deepcopy Any Callable Dict List
    Optional Tuple Union uuid4 cloudpickle pickle zmq np ray torch DictConfig Request JSONResponse
    StreamingResponse TensorDict pad_sequence DataProto copy_to_local compute_position_id_with_mask
    pad_sequence_to_length get_eos_mask get_final_eos_mask pad_2d_list_to_length get_rope_index
    AsyncRolloutRequest AsyncRolloutRequestStateEnum FinishReasonTypeEnum Message _pre_process_inputs
    SamplingParams AsyncEngineArgs RequestLogger ChatCompletionRequest ChatCompletionResponse
    ErrorResponse OpenAIServingChat BaseModelPath OpenAIServingModels RequestOutput AsyncLLM Executor
    WorkerWrapperBase ERROR_INFO_MULTI_TURN_PROMPT TOOL_CALL_CROP_MULTI_TRUN_PROMPT
    prepare_grounding_inputs_multi_turn crop_image get_valid_mask Image _get_model_runner_workers
    pad_to_max_stack ExternalRayDistributedExecutor ExternalZeroMQDistributedExecutor process_image
    compute_reward _repeat_interleave AsyncvLLMEngine
    __name__ __doc__ __package__ __loader__ __spec__ __file__ __cached__ __builtins__
""".split())
#: Locals of ``process_tool_call`` bound when it calls ``eval(bbox)``.
_CALL_LOCALS = frozenset("""
    self vllm_input decoded_resp_ observations_list image_size_used_list multi_turn_response_mask
    current_iteration save_traj save_dir doc_id error_info pattern match bbox source
""".split())
#: Every name the reference's ``eval(bbox)`` resolves.
UPSTREAM_NAMES = frozenset(vars(builtins)) - {"_"} | _ENGINE_GLOBALS | _CALL_LOCALS


class Refused(Exception):
    """The argument needs code run (or a resolved name's value); ``str()`` is the model-facing text."""


@dataclass(frozen=True)
class Resolved:
    """A name the reference resolves to an object we do not have. Every use of its value (hash,
    sign, multiplication, ``int()``) raises the refusal; holding it in a list or tuple does not."""

    name: str

    def refusal(self) -> Refused:
        return Refused(NAME_REFUSED.format(name=self.name))

    def _refuse(self, *_: object) -> int:
        raise self.refusal()

    __hash__ = __neg__ = __pos__ = __mul__ = __rmul__ = __int__ = _refuse

    def __repr__(self) -> str:
        return self.name


def evaluate(text: str) -> object:
    """The value ``eval(text)`` gives in the reference rollout, or the exception it raises; code and
    the values of resolved names raise ``Refused``. Nothing in ``text`` is executed."""
    source = text.lstrip(" \t")  # what eval() does before compiling a string
    with warnings.catch_warnings():  # the compiler's warnings stay warnings, as under eval()'s default filters
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        compile(source, "<string>", "eval", dont_inherit=True)  # eval()'s syntax errors; the code object is dropped
        tree = ast.parse(source, "<string>", "eval")
    try:
        return _Reader(source).read(tree.body)
    except RecursionError:
        raise Refused(TOO_DEEP) from None


def _leading_operands(node: ast.AST) -> list[ast.AST]:
    """The sub-expressions the interpreter evaluates before the operation ``node`` itself runs."""
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.BoolOp):
        return node.values[:1]
    if isinstance(node, ast.Compare):
        return [node.left, node.comparators[0]]
    if isinstance(node, ast.Call):
        # Unpacking ``*args`` / ``**kwargs`` runs code: operands after the first one are not read.
        operands: list[ast.AST] = [node.func]
        for arg in node.args:
            operands.append(arg.value if isinstance(arg, ast.Starred) else arg)
            if isinstance(arg, ast.Starred):
                return operands
        for keyword in node.keywords:
            operands.append(keyword.value)
            if keyword.arg is None:
                return operands
        return operands
    if isinstance(node, ast.JoinedStr):  # the first field's value and spec; formatting it runs code
        first = next(v for v in node.values if isinstance(v, ast.FormattedValue))
        return [first.value] + ([first.format_spec] if first.format_spec is not None else [])
    if isinstance(node, (ast.Attribute, ast.Starred, ast.NamedExpr)):
        return [node.value]
    if isinstance(node, ast.Subscript):
        return [node.value, node.slice]
    if isinstance(node, ast.Slice):
        return [part for part in (node.lower, node.upper, node.step) if part is not None]
    if isinstance(node, ast.IfExp):
        return [node.test]
    if isinstance(node, ast.Lambda):
        return [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return [node.generators[0].iter]
    return []


class _Reader:
    def __init__(self, source: str):
        self.source = source

    def read(self, node: ast.AST) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in UPSTREAM_NAMES:
                return Resolved(node.id)
            raise NameError(f"name {node.id!r} is not defined")
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.read(elt) for elt in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Set):
            return self._set(node)
        if isinstance(node, ast.Dict):
            return self._dict(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.read(node.operand)
            return -value if isinstance(node.op, ast.USub) else +value  # type: ignore[operator]
        if isinstance(node, ast.JoinedStr) and all(isinstance(v, ast.Constant) for v in node.values):
            return "".join(v.value for v in node.values)  # an f-string without fields
        for operand in _leading_operands(node):
            self.read(operand)
        raise self._code(node)

    def _code(self, node: ast.AST) -> Refused:
        code = ast.get_source_segment(self.source, node) or type(node).__name__
        if len(code) > _SHOWN_CODE:
            code = code[:_SHOWN_CODE] + "..."
        return Refused(CODE_REFUSED.format(code=code))

    def _set(self, node: ast.Set) -> set:
        # Small sets are hashed once every item is read; big ones and those with a starred item
        # item by item (CPython 3.11 ``starunpack_helper``).
        big = len(node.elts) > _STACK_USE_GUIDELINE
        pending: list[object] = []
        out: set = set()
        built = big
        for elt in node.elts:
            if isinstance(elt, ast.Starred):
                if not built:
                    out, built = set(pending), True
                self.read(elt.value)
                raise self._code(elt)
            value = self.read(elt)
            if built:
                out.add(value)
            else:
                pending.append(value)
        return out if built else set(pending)

    def _dict(self, node: ast.Dict) -> dict:
        # Keys are hashed per chunk of up to 17 pairs, pair by pair in a chunk of more than 15
        # (CPython 3.11 ``compiler_dict`` / ``compiler_subdict``).
        out: dict = {}
        pending = 0
        n = len(node.keys)
        for i, key in enumerate(node.keys):
            if key is None:  # ``**mapping``
                if pending:
                    self._subdict(node, i - pending, i, out)
                self.read(node.values[i])
                raise self._code(node)
            if pending * 2 > _STACK_USE_GUIDELINE:
                self._subdict(node, i - pending, i + 1, out)
                pending = 0
            else:
                pending += 1
        if pending:
            self._subdict(node, n - pending, n, out)
        return out

    def _subdict(self, node: ast.Dict, begin: int, end: int, out: dict) -> None:
        big = (end - begin) * 2 > _STACK_USE_GUIDELINE
        pairs = []
        for i in range(begin, end):
            pair = (self.read(node.keys[i]), self.read(node.values[i]))  # type: ignore[arg-type]
            if big:
                out[pair[0]] = pair[1]
            else:
                pairs.append(pair)
        out.update(pairs)

