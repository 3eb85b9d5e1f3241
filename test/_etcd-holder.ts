/**
 * A lock holder in its own process, for test/update-lock-etcd.test.ts: takes
 * the etcd lock (argv: endpoints comma-separated, id, group, ttl seconds),
 * prints "held", and keeps it (keepalives running) until it is killed.
 */
import { EtcdGateway } from "../src/update/etcd-gateway.ts";
import { EtcdLock } from "../src/update/etcd-lock.ts";

const [endpoints, id, group, ttl] = process.argv.slice(2);
const lock = new EtcdLock({ gateway: new EtcdGateway(endpoints!.split(",")), id: id!, group: group!, slots: 1, ttlSeconds: Number(ttl), pollMs: 100 });
await lock.acquire();
process.stdout.write("held\n");
setInterval(() => {}, 1 << 30);
