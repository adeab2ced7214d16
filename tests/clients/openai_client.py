"""The official `openai` Python package against tollgate (run by tests/api/gateway_clients.rs).

Env: TOLLGATE_BASE_URL (…/v1), TOLLGATE_KEY (a user key with credits), TOLLGATE_POOR_KEY (a user
key without). Prints one JSON object with what each call returned.
"""
import json
import os

import openai

client = openai.OpenAI(base_url=os.environ["TOLLGATE_BASE_URL"], api_key=os.environ["TOLLGATE_KEY"],
                       max_retries=0)
messages = [{"role": "user", "content": "Say hello"}]
out = {}

reply = client.chat.completions.create(model="gpt", messages=messages)
out["plain"] = {"content": reply.choices[0].message.content,
                "completion_tokens": reply.usage.completion_tokens}

chunks = list(client.chat.completions.create(model="gpt", messages=messages, stream=True))
out["stream"] = {"text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                 "usage_chunks": sum(1 for c in chunks if c.usage is not None)}

chunks = list(client.chat.completions.create(model="gpt", messages=messages, stream=True,
                                             stream_options={"include_usage": True}))
out["stream_with_usage"] = {"last_usage": chunks[-1].usage.completion_tokens,
                            "last_choices": len(chunks[-1].choices)}

tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}}}}]
args, name = "", None
for c in client.chat.completions.create(model="tools", messages=messages, tools=tools, stream=True):
    for call in (c.choices[0].delta.tool_calls or []) if c.choices else []:
        name = call.function.name or name
        args += call.function.arguments or ""
out["tool_call"] = {"name": name, "arguments": json.loads(args)}

poor = openai.OpenAI(base_url=os.environ["TOLLGATE_BASE_URL"],
                     api_key=os.environ["TOLLGATE_POOR_KEY"], max_retries=0)
try:
    poor.chat.completions.create(model="gpt", messages=messages)
    out["empty_balance"] = {"status": 200}
except openai.APIStatusError as e:
    out["empty_balance"] = {"status": e.status_code, "type": e.body.get("type") if isinstance(e.body, dict) else None}

print(json.dumps(out))
