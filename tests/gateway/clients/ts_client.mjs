// A TypeScript SDK client driven by one JSON argument, for the gateway's lifecycle tests.
// {"command": ..., "args": [...], "env": {...}} (stdio) or {"url": ...} (Streamable HTTP); optional "call":
// {name, arguments}. Prints one JSON line: connected, tools, call, error, pid, connectMs, closeMs.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const spec = JSON.parse(process.argv[2]);
const transport = spec.url
  ? new StreamableHTTPClientTransport(new URL(spec.url))
  : new StdioClientTransport({ command: spec.command, args: spec.args, env: spec.env, stderr: "inherit" });
const client = new Client({ name: "ts-lifecycle", version: "1.0.0" });
const out = { connected: false };
let started = performance.now();
try {
  await client.connect(transport);
  out.connected = true;
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  if (spec.call) out.call = await client.callTool(spec.call);
} catch (err) {
  out.error = String(err?.message ?? err);
  out.code = err?.code ?? null;
}
out.connectMs = performance.now() - started;
out.pid = transport.pid ?? null;
started = performance.now();
await client.close();
out.closeMs = performance.now() - started;
console.log(JSON.stringify(out));
