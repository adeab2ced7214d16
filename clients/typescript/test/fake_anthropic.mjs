// A local stand-in for api.anthropic.com's Messages API (POST /v1/messages), answering in its
// wire format (https://docs.anthropic.com/en/api/messages): a `message` object with `usage`.
// It refuses a request without the provider key tollgate was configured with.
import { createServer } from "node:http";

export const PROVIDER_KEY = "sk-ant-test-provider-key";

export async function fakeAnthropic() {
  const calls = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
      calls.push({ path: req.url, headers: req.headers, body });
      if (req.headers["x-api-key"] !== PROVIDER_KEY) {
        res.writeHead(401, { "content-type": "application/json" });
        return res.end(JSON.stringify({ type: "error", error: { type: "authentication_error", message: "invalid x-api-key" } }));
      }
      res.writeHead(200, { "content-type": "application/json", "request-id": `req_${calls.length}` });
      res.end(
        JSON.stringify({
          id: `msg_fake_${calls.length}`,
          type: "message",
          role: "assistant",
          model: body.model,
          content: [{ type: "text", text: "Hello from the fake Anthropic." }],
          stop_reason: "end_turn",
          stop_sequence: null,
          usage: { input_tokens: 12, output_tokens: 7 },
        }),
      );
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    calls,
    close: () => server.close(),
    /** Config that makes model `claude` an Anthropic model served by this fake. */
    config() {
      return `
[providers.anthropic]
base_url = "${this.url}"
api_key = "${PROVIDER_KEY}"

[models.claude]
provider = "anthropic"
upstream = "claude-sonnet-4-5"

[prices.claude]
input = "3"
output = "15"
`;
    },
  };
}
