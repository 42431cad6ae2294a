"""The prompts of a run: text and token ids per example, and the built-in few-shot examples."""

from __future__ import annotations

from ..errors import UserError

# Few-shot examples: general-knowledge questions outside every built-in dataset's relations,
# answered in the short style the graders and the exact-answer search expect.
FEW_SHOT = (
    ("What is the chemical symbol for gold?", "Au"),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare"),
    ("How many legs does a spider have?", "Eight"),
    ("What is the largest planet in the Solar System?", "Jupiter"),
    ("In which year did the first person walk on the Moon?", "1969"),
)


def check_few_shot(n: int) -> list[tuple[str, str]]:
    if not 0 <= n <= len(FEW_SHOT):
        raise UserError("--few-shot", f"must be between 0 and {len(FEW_SHOT)} (got {n})",
                        f"pass --few-shot {len(FEW_SHOT)} or less")
    return list(FEW_SHOT[:n])


class Prompts:
    """Prompt text and token ids per example, in the dataset's order."""

    def __init__(self, tokenizer, template: str, few_shot: int, questions: list[str]):
        from ..models.prompts import build_prompt, encode_prompt, prompt_format

        fmt = prompt_format(tokenizer, template)
        self.kind = fmt.kind
        self.stop_on_newline = fmt.stop_on_newline
        self.few_shot = check_few_shot(few_shot)
        self.text = [build_prompt(tokenizer, q, template=template, few_shot=self.few_shot)
                     for q in questions]
        self.ids = [encode_prompt(tokenizer, t) for t in self.text]
