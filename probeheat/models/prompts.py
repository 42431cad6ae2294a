"""Prompt templates, as in the study: chat template for instruct models, `Q: ...\\nA:` otherwise.

Templates:
- "auto": "chat" when the tokenizer has a chat template, else "qa".
- "chat": the tokenizer's chat template, one user turn, generation prompt appended;
  few-shot examples become earlier user/assistant turns.
- "qa": `Q: {question}\\nA:`; few-shot examples become earlier `Q: .../A: ...` lines.
- any other string containing "{question}": a user template, used verbatim (few-shot
  examples are the same template filled with the example question, then " answer").

Base-model formats (qa and user templates) keep going after the answer ("...\\nQ: next"),
so generation stops at the first newline there; chat answers run to EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from probeheat.errors import UserError

QA_TEMPLATE = "Q: {question}\nA:"


@dataclass(frozen=True)
class PromptFormat:
    kind: str  # "chat" | "qa" | "custom"
    template: str | None  # the text template for qa/custom
    stop_on_newline: bool


def prompt_format(tokenizer: Any, template: str = "auto") -> PromptFormat:
    """Resolve `template` against this tokenizer (UserError when it cannot apply)."""
    has_chat = bool(getattr(tokenizer, "chat_template", None))
    if template == "auto":
        template = "chat" if has_chat else "qa"
    if template == "chat":
        if not has_chat:
            raise UserError("--template", "the model's tokenizer has no chat template",
                            "use --template qa or a template string with {question}")
        return PromptFormat("chat", None, stop_on_newline=False)
    if template == "qa":
        return PromptFormat("qa", QA_TEMPLATE, stop_on_newline=True)
    check_template(template)
    return PromptFormat("custom", template, stop_on_newline=True)


def check_template(template: str) -> None:
    """A user template (not auto, chat or qa) must hold {question} and no other braces:
    checked before any model loads."""
    if template in ("auto", "chat", "qa"):
        return
    if "{question}" not in template:
        raise UserError("--template", f"template {template!r} has no {{question}} placeholder",
                        "use auto, chat, qa or a string containing {question}")
    try:
        template.format(question="")
    except (KeyError, IndexError, ValueError):
        raise UserError("--template", f"template {template!r} has braces other than {{question}}",
                        "double literal braces as {{ and }}") from None


def build_prompt(
    tokenizer: Any,
    question: str,
    *,
    template: str = "auto",
    few_shot: Sequence[tuple[str, str]] = (),
) -> str:
    """The full prompt text for one question (encode it with `encode_prompt`)."""
    fmt = prompt_format(tokenizer, template)
    if fmt.kind == "chat":
        messages = []
        for q, a in few_shot:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": question})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    shots = "".join(fmt.template.format(question=q) + f" {a}\n" for q, a in few_shot)
    return shots + fmt.template.format(question=question)


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids for a prompt, with the model's leading special tokens exactly once.

    A chat-templated prompt already spells its special tokens (BOS included, where the
    template has one), so nothing is added to text that contains special-token strings.
    Plain text gets the tokenizer's leading special tokens (e.g. a Llama BOS) but never a
    trailing EOS, which would tell the model the prompt is finished.
    """
    specials = [s for s in getattr(tokenizer, "all_special_tokens", []) if s]
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if any(s in text for s in specials):
        return ids
    return _leading_specials(tokenizer) + ids


def _leading_specials(tokenizer: Any) -> list[int]:
    probe = "a"
    with_specials = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    without = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    for start in range(len(with_specials) - len(without) + 1):
        if with_specials[start:start + len(without)] == without:
            return with_specials[:start]
    return []
