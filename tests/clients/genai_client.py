"""The official `google-genai` package against tollgate's Gemini pass-through (/gemini).

Run by tests/api/gateway_clients.rs with TOLLGATE_BASE_URL (…/gemini), TOLLGATE_KEY and
TOLLGATE_POOR_KEY (a user with no credits). Prints one JSON object of what the SDK parsed.
"""

import json
import os

from google import genai
from google.genai import errors


def client(key):
    return genai.Client(api_key=key, http_options={"base_url": os.environ["TOLLGATE_BASE_URL"]})


def main():
    out = {}
    sdk = client(os.environ["TOLLGATE_KEY"])

    answer = sdk.models.generate_content(model="gemini", contents="Say hi")
    out["plain"] = {
        "text": answer.text,
        "prompt_tokens": answer.usage_metadata.prompt_token_count,
        "candidates_tokens": answer.usage_metadata.candidates_token_count,
    }

    chunks = list(sdk.models.generate_content_stream(model="gemini", contents="Say hi"))
    out["stream"] = {
        "text": "".join(c.text or "" for c in chunks),
        "chunks": len(chunks),
    }

    # Kept in a variable: the SDK closes a client's connections when it is collected.
    poor = client(os.environ["TOLLGATE_POOR_KEY"])
    try:
        poor.models.generate_content(model="gemini", contents="Say hi")
        out["empty_balance"] = {"status": 200}
    except errors.APIError as e:
        out["empty_balance"] = {"status": e.code}

    print(json.dumps(out))


if __name__ == "__main__":
    main()
