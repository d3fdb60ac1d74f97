// Resource subscriptions of a Node agent: `agent.notifyResourceUpdated` reaches a client's
// `subscriptions/listen` stream over mTLS (core serves the stream; the binding passes the
// announcement through), and a URI the agent does not serve is a ConfigError.

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError } from "../dist/index.js";
import { mcpPost, waitUntil } from "../../tests/node/meshkit.mjs";
import { agent, meshFixture } from "./fixtures.mjs";

const fixture = meshFixture({ registry: false });
const WATCHED = "test://watched";

describe("resource subscriptions", { timeout: 60_000 }, () => {
  it("deliver the agent's announcements on a listen stream, which its stop ends", async () => {
    const alpha = agent(fixture, "alpha");
    alpha.addResource({ uri: WATCHED, name: "watched", mimeType: "text/plain", text: "v1" });
    await alpha.start();
    let stopped = false;
    try {
      const listen = { jsonrpc: "2.0", id: 7, method: "subscriptions/listen", params: { notifications: { resourceSubscriptions: [WATCHED] } } };
      // The stream's answer comes when it ends: the agent's stop ends it with the listen result.
      const streamed = mcpPost(alpha.endpoint, fixture.certs, listen);
      // Announcements before the subscription is in place reach no one (0), and are not queued.
      await waitUntil(() => alpha.notifyResourceUpdated(WATCHED) === 1, 10_000, "the listen stream to take an update");
      assert.throws(() => alpha.notifyResourceUpdated("test://nope"), (error) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, /'test:\/\/nope' is not a resource this agent serves/);
        return true;
      });
      await alpha.stop();
      stopped = true;
      const { status, body, events } = await streamed;
      assert.equal(status, 200);
      const subscription = { "io.modelcontextprotocol/subscriptionId": 7 };
      assert.deepEqual(events, [
        { jsonrpc: "2.0", method: "notifications/subscriptions/acknowledged", params: { notifications: { resourceSubscriptions: [WATCHED] }, _meta: subscription } },
        { jsonrpc: "2.0", method: "notifications/resources/updated", params: { uri: WATCHED, _meta: subscription } },
      ]);
      assert.equal(body.id, 7);
      assert.equal(body.result.resultType, "complete");
    } finally {
      if (!stopped) await alpha.stop();
    }
  });
});
