"""The official `anthropic` package against tollgate's Anthropic pass-through (/anthropic).

Run by tests/api/gateway_clients.rs with TOLLGATE_BASE_URL (…/anthropic), TOLLGATE_KEY and
TOLLGATE_POOR_KEY (a user with no credits). Prints one JSON object of what the SDK parsed.
"""

import json
import os

import anthropic

BASE = os.environ["TOLLGATE_BASE_URL"]
MESSAGES = [{"role": "user", "content": "Say hello"}]


def client(key):
    # No SDK retries: every request the test counts is one the script made.
    return anthropic.Anthropic(base_url=BASE, api_key=key, max_retries=0)


def main():
    out = {}
    sdk = client(os.environ["TOLLGATE_KEY"])

    message = sdk.messages.create(
        model="claude", max_tokens=256, system="Be brief", messages=MESSAGES
    )
    out["plain"] = {
        "text": message.content[0].text,
        "stop_reason": message.stop_reason,
        "input_tokens": message.usage.input_tokens,
        "output_tokens": message.usage.output_tokens,
    }

    with sdk.messages.stream(model="claude", max_tokens=256, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    out["stream"] = {
        "text": text,
        "stop_reason": final.stop_reason,
        "output_tokens": final.usage.output_tokens,
    }

    poor = client(os.environ["TOLLGATE_POOR_KEY"])
    try:
        poor.messages.create(model="claude", max_tokens=256, messages=MESSAGES)
        out["empty_balance"] = {"status": 200}
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        out["empty_balance"] = {"status": e.status_code, "type": body.get("type")}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
