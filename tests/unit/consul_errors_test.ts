/**
 * How a request that got no answer from Consul is described (src/consul.ts `transportFailure`), on the error
 * texts Deno 2.9.6's fetch gives (each copied from a real failure).
 */
import { assertEquals } from "./assert.ts";
import { transportFailure } from "../../src/consul.ts";

function fetchFailure(cause: string): TypeError {
  return new TypeError("fetch failed", { cause: new Error(cause) });
}

Deno.test("transportFailure() names the socket error by its code, without fetch's URL and layers", () => {
  assertEquals(
    transportFailure(
      fetchFailure(
        "error sending request for url (http://127.0.0.1:39999/v1/kv/x): client error (Connect): " +
          "tcp connect error: Connection refused (os error 111)",
      ),
      2000,
    ),
    "ECONNREFUSED: tcp connect error: Connection refused (os error 111)",
  );
  assertEquals(
    transportFailure(
      fetchFailure(
        "error sending request for url (http://consul:8500/v1/kv/x): client error (Connect): " +
          "dns error: failed to lookup address information: Name or service not known",
      ),
      2000,
    ),
    "ENOTFOUND: dns error: failed to lookup address information: Name or service not known",
  );
  assertEquals(
    transportFailure(
      fetchFailure(
        "error sending request from 127.0.0.1:43894 for http://127.0.0.1:43133/v1/kv/x (127.0.0.1:43133): " +
          "client error (SendRequest): connection closed before message completed",
      ),
      2000,
    ),
    "ECONNRESET: connection closed before message completed",
  );
  assertEquals(
    transportFailure(new TypeError("error reading a body from connection"), 2000),
    "ECONNRESET: error reading a body from connection",
  );
  assertEquals(
    transportFailure(
      fetchFailure("client error (Connect): tcp connect error: No route to host (os error 113)"),
      1,
    ),
    "EHOSTUNREACH: tcp connect error: No route to host (os error 113)",
  );
});

Deno.test("transportFailure() says a timed-out request waited CONSUL_TIMEOUT, and keeps other texts whole", () => {
  assertEquals(
    transportFailure(new DOMException("Signal timed out.", "TimeoutError"), 1500),
    "ETIMEDOUT: no answer within 1500 ms (CONSUL_TIMEOUT)",
  );
  assertEquals(transportFailure(new TypeError("invalid URL"), 2000), "invalid URL");
  assertEquals(transportFailure("odd", 2000), "odd");
});
