"""A complete agentry agent in Python: capability `word_count`.

    pip install ./sdk/python
    AGENTRY_NATS_URL=nats://127.0.0.1:4222 python examples/python/word_count.py
    agentry submit word_count --input '{"text": "to be or not to be"}'
"""

from agentry import Agent, Context, InvalidInput, RetryableError, Task

agent = Agent("word_count", "1.0.0", "Counts words; fails on request (for tests)")

TEXT = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": "string"}, "fail_until": {"type": "integer"}},
}
COUNTS = {"type": "object", "required": ["words"], "properties": {"words": {"type": "integer"}}}


@agent.capability("word_count", input_schema=TEXT, output_schema=COUNTS)
async def word_count(task: Task, ctx: Context) -> dict[str, object]:
    text: str = task.input["text"]
    if task.input.get("fail_until", 0) >= task.attempt:
        raise RetryableError(f"asked to fail until attempt {task.input['fail_until']}")
    if "\x00" in text:
        raise InvalidInput("text contains NUL")
    words = text.split()
    return {"words": len(words), "longest": max(words, key=len, default=""), "agent": ctx.agent_id}


if __name__ == "__main__":
    agent.main()
