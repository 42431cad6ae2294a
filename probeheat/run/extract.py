"""The study's model-based exact-answer extraction for wrong answers (or NO ANSWER)."""

from __future__ import annotations


class Extractor:
    """A model (the answering one, or another) that copies the short answer out of a long one."""

    def __init__(self, cfg, engine):
        from ..models import load_model
        from .capture import CaptureEngine

        if cfg.extractor_model in ("self", cfg.model):
            self.engine = engine
        else:
            other = load_model(cfg.extractor_model, device=cfg.device, dtype=cfg.dtype,
                               device_map=cfg.device_map, trust_remote_code=cfg.trust_remote_code)
            self.engine = CaptureEngine(other, sites=("resid",), mode="generate", max_new_tokens=24,
                                        stop_on_newline=True, lookback=1)
        self.tokenizer = self.engine.loaded.tokenizer

    def extract_many(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """{(question, answer): the extractor's first line} for each pair."""
        from ..data.exact import make_extractor_prompt
        from ..models.prompts import build_prompt

        if not pairs:
            return {}
        texts = [build_prompt(self.tokenizer, make_extractor_prompt(q, a)) for q, a in pairs]
        outputs = self.engine.generate_text(texts, max_new_tokens=24)
        return {pair: out.strip().splitlines()[0].strip() if out.strip() else "NO ANSWER"
                for pair, out in zip(pairs, outputs, strict=True)}
