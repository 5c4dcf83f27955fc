"""The tutorial's prompts, word for word, and the one function that fills them in."""

SYSTEM_PROMPT = """
Human: You are an AI assistant. You are able to find answers to the questions from the contextual passage snippets provided.
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


def build_messages(texts: list[str], question: str) -> list[dict[str, str]]:
    """The chat messages: the system prompt, then the retrieved texts and the question."""
    context = "\n".join(texts)
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
