"""The answer eval: questions over docs/ with their sources and key facts
(questions.toml), scored for retrieval, grounding and latency through the
product's own gateway. `python -m eval.answers`; figures in docs/answers.md."""
