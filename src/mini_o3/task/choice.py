"""The multiple-choice letter reader: which option an extracted answer span names, or ``None``.

It follows what lmms-eval's and VLMEvalKit's readers agree on (the consensus table in
``tests/unit/golden/mc_answer_consensus.json``), applied to the answer span, in this order:

1. the whole answer is exactly one option's text ("A bus" when option B is "a bus");
2. an answer phrase ("The answer is", "Answer:", "Option", "I choose", 答案是, 选, 选项, …)
   followed by a letter form;
3. a leading letter form: ``B``, ``(B)``, ``[B]``, ``B.``/``B)``/``B:``/``B,``/``B -`` + text;
4. one standalone letter closing the answer ("Looking closely, it's B"), unless negated;
5. exactly one option text inside the answer, on word boundaries ("It is red").

Before reading: NFKC (full-width letters and brackets), 【】/、/。 folded, ``\\boxed{…}``,
``\\text{…}``, ``$``, ``**``, ``__`` and backticks removed. A lowercase letter counts only alone,
bracketed or before ``.):,;`` ("a red car" is not option A). Two letters ("A or B", "A, B",
"AB") and a letter inside a word ("Blue", "DVD") name nothing.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Optional, Sequence

_FOLD = str.maketrans({"【": "[", "】": "]", "〔": "[", "〕": "]", "、": ",", "。": ".", "–": "-", "—": "-", "−": "-"})
_BOXED = "\\boxed{"
_TEXT_COMMAND_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_MARKUP_RE = re.compile(r"\*+|__|[`$]|\\[()\[\]]")
_LEADIN = r"\b(?:(?:the|my|final|correct|best|right)\s+)*"
_COPULA = r"(?:\s+(?:is|would\s+be|should\s+be|will\s+be))?"
#: "answer" phrases outrank "option"/"choice" ones ("The answer is A. Option B is wrong" → A).
_ANSWER_PHRASE_RE = re.compile(
    _LEADIN + r"answer\b" + _COPULA + r"(?:\s+(?:option|choice)\b)?\s*:?"
    r"|\bi\s+(?:choose|select|pick)\b(?:\s+(?:option|choice)\b)?|(?:最佳|正确)?答案(?:应该是|应为|是|为)?\s*:?",
    re.IGNORECASE,
)
_OPTION_PHRASE_RE = re.compile(_LEADIN + r"(?:option|choice)\b" + _COPULA + r"\s*:?|选项|选择|选", re.IGNORECASE)
_LEAD_RE = re.compile(r"\s*(?:[(\[]\s*(?P<bracketed>[A-Za-z])\s*[)\]]|(?P<bare>[A-Za-z])(?![A-Za-z0-9'’]))(?P<rest>.*)", re.DOTALL)
_LOWER_SEPARATOR_RE = re.compile(r"[.):,;](?:\s|$)")
#: A capital standing alone; "A"/"I" before a lowercase word (not "or", "and", "is", …) is an article/pronoun.
_LETTER_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])([A-Z])(?![A-Za-z0-9'’])")
_ARTICLE_RE = re.compile(
    r"\s+(?!(?:or|and|nor|vs|versus|to|through|is|was|are|seems|looks|appears|would|should|could|might|must"
    r"|can|will|may)\b)[a-z]"
)
_NEGATION_RE = re.compile(r"(?:\b(?:not|no|never|isn't|isnt)\s*[(\[]?\s*|不是\s*)$", re.IGNORECASE)
_TRAILER = " .)]!?,;"
_OPTION_LABEL_RE = re.compile(r"^[(\[]?[A-Z][).:\]]\s*")
_NO_MATCH = object()  # a rule that does not apply (None: the answer names no option)


def option_letter(text: str, options: Sequence[str] = ()) -> Optional[str]:
    """The option letter ``text`` names, or ``None``; ``options`` are texts or "(A) text" strings
    (texts compare after ``scoring.normalize_free_form``). Without options any letter A–Z counts
    and rules 1 and 5 are skipped."""
    from .scoring import normalize_free_form  # scoring imports this module

    texts = [_OPTION_LABEL_RE.sub("", o.strip(), 1) for o in options]
    valid = {chr(65 + i) for i in range(len(texts) if texts else 26)}
    t = clean_answer(text)
    for rule in (_exact_text, _after_phrase, _lead_letter, _trailing, _contained_text):
        found = rule(t, texts, valid, normalize_free_form)
        if found is not _NO_MATCH:
            return found
    return None


def clean_answer(text: str) -> str:
    """NFKC, CJK brackets/punctuation folded, LaTeX boxes and markdown removed, spaces folded."""
    t = unicodedata.normalize("NFKC", text).translate(_FOLD)
    t = _unbox(t)
    for _ in range(3):
        t = _TEXT_COMMAND_RE.sub(r"\1", t)
    t = _MARKUP_RE.sub("", t)
    return " ".join(t.split()).strip(" .!?;,")


def _unbox(text: str) -> str:
    """Replace every ``\\boxed{…}`` (balanced braces) by its content."""
    while (start := text.find(_BOXED)) != -1:
        depth, pos = 1, start + len(_BOXED)
        while pos < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[pos], 0)
            pos += 1
        inner_end = pos - 1 if depth == 0 else pos
        text = text[:start] + text[start + len(_BOXED):inner_end] + text[pos:]
    return text


def _exact_text(t, texts, valid, normalize):
    wanted = normalize(t)
    hits = [i for i, o in enumerate(texts) if wanted and normalize(o) == wanted]
    return chr(65 + hits[0]) if len(hits) == 1 else _NO_MATCH


def _after_phrase(t, texts, valid, normalize):
    """The letter after the last answer phrase that has one (answer phrases before option phrases)."""
    for phrase in (_ANSWER_PHRASE_RE, _OPTION_PHRASE_RE):
        for match in reversed(list(phrase.finditer(t))):
            letter = _lead_letter(t[match.end():], texts, valid, normalize)
            if letter is not _NO_MATCH:
                return letter
    return _NO_MATCH


def _lead_letter(s, texts, valid, normalize):
    """A letter form at the start of ``s`` (and whether the rest hedges), else ``_NO_MATCH``."""
    m = _LEAD_RE.match(s)
    if m is None:
        return _NO_MATCH
    rest = m["rest"]
    if m["bare"] is not None and m["bare"].islower() and rest.strip() and not _LOWER_SEPARATOR_RE.match(rest):
        return _NO_MATCH  # "a red car": an article, not option A
    letter = (m["bracketed"] or m["bare"]).upper()
    if letter not in valid:
        return _NO_MATCH
    remainder = rest.strip().lstrip(".):,;- ").strip()
    if not remainder:
        return letter
    if texts and normalize(remainder) == normalize(texts[ord(letter) - 65]):
        return letter  # "C. A red car": the rest restates the option
    others = {x for x, _ in _letter_tokens(remainder, valid) if x != letter}
    if not others:
        return letter
    if m["bare"] in ("A", "I") and _ARTICLE_RE.match(rest):
        return _NO_MATCH  # "A bus, so B": the leading "A" is an article
    return None  # "A or B", "B, C": two letters


def _letter_tokens(s, valid):
    out = []
    for m in _LETTER_TOKEN_RE.finditer(s):
        letter = m[1]
        if letter not in valid or (letter in "AI" and _ARTICLE_RE.match(s, m.end())):
            continue
        out.append((letter, m))
    return out


def _trailing(t, texts, valid, normalize):
    tokens = _letter_tokens(t, valid)
    if len({letter for letter, _ in tokens}) != 1:
        return None if tokens else _NO_MATCH
    letter, last = tokens[-1]
    if t[last.end():].strip(_TRAILER) or _NEGATION_RE.search(t[: last.start()]):
        return None
    return letter


def _contained_text(t, texts, valid, normalize):
    padded = f" {normalize(t)} "
    hits = [(i, normalize(o)) for i, o in enumerate(texts)]
    hits = [(i, o) for i, o in hits if o and f" {o} " in padded]
    hits = [(i, o) for i, o in hits if not any(o != other and o in other for _, other in hits)]
    return chr(65 + hits[0][0]) if len(hits) == 1 else None
