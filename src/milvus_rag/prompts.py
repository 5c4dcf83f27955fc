"""The tutorial's prompts (plus numbered passages to cite), and the functions that fill them in."""

SYSTEM_PROMPT = """
Human: You are an AI assistant. You are able to find answers to the questions from the contextual passage snippets provided.
Cite the numbered passages you use, like [1].
"""

USER_PROMPT_TEMPLATE = """
Use the following pieces of information enclosed in <context> tags to provide an answer to the question enclosed in <question> tags.
<context>
{context}
</context>
<question>
{question}
</question>
"""


def number_passages(texts: list[str]) -> str:
    """The context: each retrieved text on its own, numbered ``[1]``, ``[2]``, ... for citing."""
    return "\n\n".join(f"[{i}] {text.strip()}" for i, text in enumerate(texts, 1))


def build_messages(texts: list[str], question: str) -> list[dict[str, str]]:
    """The chat messages: the system prompt, then the numbered retrieved texts and the question."""
    context = number_passages(texts)
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": USER_PROMPT_TEMPLATE.format(context=context, question=question),
        },
    ]


def parse_user_prompt(prompt: str) -> tuple[str, str]:
    """The (context, question) inside a user prompt built by ``build_messages``."""
    import re

    context = re.search(r"^<context>\n(.*?)\n</context>$", prompt, re.S | re.M)
    question = re.search(r"^<question>\n(.*?)\n</question>$", prompt, re.S | re.M)
    return (
        context.group(1) if context else "",
        question.group(1).strip() if question else prompt.strip(),
    )


def passage_title(text: str) -> str:
    """A passage's first non-empty line, without heading marks (its FAQ title, usually)."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line
    return "(empty passage)"


def format_sources(hits) -> str:
    """The passages given to the model, numbered as in the prompt: file, title and distance.

    ``hits`` are Milvus search hits (``{"distance": ..., "entity": {...}}``) or flat dicts
    with ``text``, ``distance`` and optionally ``source`` and ``title``.
    """
    lines = []
    for number, hit in enumerate(hits, 1):
        fields = {**hit.get("entity", {}), **{k: v for k, v in hit.items() if k != "entity"}}
        title = fields.get("title") or passage_title(fields.get("text", ""))
        source = fields.get("source") or "?"
        lines.append(f"[{number}] {source} · {title} (distance {fields['distance']:.3f})")
    return "\n".join(lines)
