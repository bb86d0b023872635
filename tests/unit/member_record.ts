/** A member record for unit tests: a caught-up MariaDB replica at `10.0.0.<digits of node>`, with overrides. */
import type { MemberRecord } from "../../src/ha/failover_plan.ts";

export function memberRecord(node: string, over: Partial<MemberRecord> = {}): MemberRecord {
  return {
    node,
    address: `10.0.0.${node.replace(/\D/g, "") || "1"}`,
    port: 3306,
    priority: 1,
    flavour: "mariadb",
    role: "replica",
    executed: "",
    retrieved: "",
    updatedAt: 100,
    ...over,
  };
}
