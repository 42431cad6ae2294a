"""`probeheat run`: a model answers a QA dataset; hidden states at named positions are saved."""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "answer a QA dataset with a model and capture hidden states at every layer"


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, type=Path, help="run bundle folder to write")
    add_model_options(p.add_argument_group("model"))
    add_data_options(p.add_argument_group("dataset"))
    add_answer_options(p.add_argument_group("answers"))
    add_capture_options(p.add_argument_group("capture"))
    add_sample_options(p.add_argument_group("sampled answers (error types, answer selection)"))
    job = p.add_argument_group("the job")
    job.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    job.add_argument("--resume", action="store_true", help="continue an unfinished run in --out")
    job.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    job.add_argument("--quiet", action="store_true",
                     help="print nothing but errors: no progress, no summary")
    add_log_options(job)


def add_model_options(g) -> None:
    from ..models.builtin import BUILTIN_MODELS

    g.add_argument("--model", default="smollm2-135m-instruct",
                   help=f"a built-in name ({', '.join(BUILTIN_MODELS)}), a local Hugging Face "
                        "folder, a .gguf file or a hub id (default: %(default)s)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs (default: %(default)s: cuda when available)")
    g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="compute dtype (default: %(default)s)")
    g.add_argument("--device-map", default=None, choices=["auto"],
                   help="spread a model larger than one GPU over the visible GPUs")
    g.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code")
    g.add_argument("--revision", help="hub revision: branch, tag or commit (hub ids only)")


def add_data_options(g) -> None:
    from ..data.presets import PRESETS

    g.add_argument("--dataset", default="world-facts",
                   help="world-facts (built in), a study preset "
                        f"({', '.join(PRESETS)}), a .jsonl/.json/.csv/.parquet file, or "
                        "hf:NAME[:CONFIG] (default: %(default)s)")
    g.add_argument("--limit", type=int,
                   help="use the first N questions after the seeded shuffle (default: all)")
    g.add_argument("--seed", type=int, default=0, help="shuffle seed (default: %(default)s)")
    g.add_argument("--question-column", default="question",
                   help="column of the question text (default: %(default)s)")
    g.add_argument("--answers-column", default="answers",
                   help="column of the gold aliases: a list, or one string split on | "
                        "(default: %(default)s)")
    g.add_argument("--id-column",
                   help="column holding each question's id (default: 'id' when the file has "
                        "one, else the row number)")
    g.add_argument("--missing-id", default="skip", choices=["skip", "row"],
                   help="a row without an id: skip it (counted in the summary) or use its row "
                        "number (default: %(default)s)")
    g.add_argument("--category-column",
                   help="column whose values group questions for the category baseline "
                        "(default: the dataset's own; world-facts: relation)")
    g.add_argument("--group-column",
                   help="column of groups that never straddle a probe's train/test split "
                        "(duplicate questions never do)")


def template_arg(value: str) -> str:
    """A template as typed in a shell: the two characters \\n are a newline, \\t a tab
    and \\\\ one backslash (`--template 'Q: {question}\\nA:'` means what it says)."""
    import re

    escapes = {"n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\([nt\\])", lambda m: escapes[m.group(1)], value)


def add_answer_options(g) -> None:
    from ..data.graders import GRADERS

    g.add_argument("--template", default="auto", type=template_arg,
                   help="auto (chat when the tokenizer has a chat template, else qa), chat, qa "
                        "(`Q: {question}\\nA:`) or a string with {question}, where \\n and "
                        "\\t are a newline and a tab, as typed in a shell (default: "
                        "%(default)s)")
    g.add_argument("--few-shot", type=int, default=0,
                   help="built-in few-shot examples before each question, 0-5 (default: "
                        "%(default)s)")
    g.add_argument("--max-new-tokens", type=int, default=64,
                   help="longest answer, in tokens (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=16,
                   help="questions answered together (default: %(default)s)")
    g.add_argument("--grader", metavar="NAME",
                   help=f"how an answer is graded against its aliases: {', '.join(GRADERS)} "
                        "(default: the dataset's; world-facts: alias_match)")
    g.add_argument("--extractor-model",
                   help="model that extracts the exact answer of wrong answers ('self' = the "
                        "answering model; default: the heuristic)")
    g.add_argument("--exact-answer", default="study", choices=["study", "symmetric"],
                   help="study: a correct answer's span is its gold alias, a wrong one's comes "
                        "from the extractor; symmetric: the extractor (or heuristic) finds every "
                        "answer's span, so the span cannot depend on the label "
                        "(default: %(default)s)")
    g.add_argument("--answers-from", type=Path, metavar="RUN",
                   help="reuse the answers of this run (same model, dataset and prompts; a "
                        "smaller --limit reuses its first answers): no generation, one "
                        "batched re-forward; e.g. the same answers under --exact-answer "
                        "symmetric or other --positions")
    g.add_argument("--no-baselines", action="store_true",
                   help="skip storing token log-probabilities and p(True) (one forward per "
                        "answer and per exact answer)")


def add_capture_options(g) -> None:
    g.add_argument("--positions", default="default",
                   help="positions to capture: a comma list such as last_q,exact_answer_last,-1, "
                        "exact_answer_last+2, ranges such as -12:-9 (default: the study's 15)")
    g.add_argument("--sites", default="resid",
                   help="comma list of resid, mlp, attn, head (default: %(default)s)")
    g.add_argument("--capture", default="generate", choices=["generate", "reforward"],
                   help="capture during generation, or in a second forward pass (default: "
                        "%(default)s)")
    g.add_argument("--shard-size", type=int, default=128,
                   help="examples per shard file (default: %(default)s)")
    g.add_argument("--store-dtype", default="auto",
                   choices=["auto", "float32", "float16", "bfloat16"],
                   help="dtype of stored activations: auto is float16 for float32 runs, else "
                        "the compute dtype (default: %(default)s)")


def add_sample_options(g) -> None:
    g.add_argument("--samples", type=int, default=0, metavar="K",
                   help="also sample K answers per question (K >= 2; the prompt's prefill is "
                        "shared), graded and typed by the study's error-type rules "
                        "(default: %(default)s, no sampling)")
    g.add_argument("--temperature", type=float, default=1.0,
                   help="sampling temperature, > 0 (default: %(default)s)")
    g.add_argument("--top-p", type=float, default=1.0,
                   help="nucleus sampling mass in (0, 1] (default: %(default)s, off)")
    g.add_argument("--top-k", type=int, default=50,
                   help="sample among the K most likely tokens, 0 = all (default: %(default)s, "
                        "as the study)")
    g.add_argument("--sample-layers", metavar="LAYERS",
                   help="resid layers captured for samples: 4:20, 8:, 0,4,8 (default: all)")
    g.add_argument("--sample-positions", default="exact_answer_last,-1",
                   help="positions captured for samples (default: %(default)s)")


def add_log_options(p) -> None:
    """--log-format / --log-interval / --verbose, shared by every long command."""
    p.add_argument("--log-format", default="auto", choices=["auto", "bar", "text", "json"],
                   help="progress as a live bar (auto on a terminal), plain text lines "
                        "(auto when output is piped or redirected) or JSON lines "
                        "(default: %(default)s)")
    p.add_argument("--log-interval", type=float, default=30.0, metavar="SECONDS",
                   help="seconds between progress lines in text/json mode (default: %(default)s)")
    p.add_argument("--verbose", action="store_true",
                   help="let third-party libraries print their own progress bars and notices")


def run(args) -> int:
    from ..run.config import RunConfig
    from ..run.pipeline import run as do_run

    cfg = RunConfig(
        out=args.out, model=args.model, dataset=args.dataset, limit=args.limit, seed=args.seed,
        positions=args.positions,
        template=args.template, few_shot=args.few_shot, max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size, shard_size=args.shard_size, device=args.device,
        dtype=args.dtype, store_dtype=args.store_dtype, device_map=args.device_map,
        trust_remote_code=args.trust_remote_code, revision=args.revision, capture=args.capture,
        sites=[s.strip() for s in args.sites.split(",") if s.strip()], grader=args.grader,
        extractor_model=args.extractor_model, question_column=args.question_column,
        answers_column=args.answers_column, id_column=args.id_column,
        missing_id=args.missing_id, resume=args.resume,
        overwrite=args.overwrite, quiet=args.quiet, threads=args.threads,
        progress=args.log_format, log_interval=args.log_interval, verbose=args.verbose,
        exact_answer=args.exact_answer, category_column=args.category_column,
        group_column=args.group_column, baselines=not args.no_baselines,
        answers_from=args.answers_from, samples=args.samples, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, sample_layers=args.sample_layers,
        sample_positions=args.sample_positions,
    )
    do_run(cfg, argv=["probeheat", *sys.argv[1:]])
    return 0
