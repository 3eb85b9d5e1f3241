import { describe, expect, test } from "bun:test";
import { accountOf, groupsOf, passwdEntry } from "./passwd.ts";

// As Debian 12's base-passwd and the nginx and mariadb-server packages leave them.
const PASSWD = [
  "root:x:0:0:root:/root:/bin/bash",
  "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin",
  "mysql:x:100:101:MySQL Server,,,:/nonexistent:/bin/false",
  "broken:x:notanumber:1:x:/x:/bin/sh",
  "",
].join("\n");
const GROUP = ["root:x:0:", "www-data:x:33:", "adm:x:4:www-data,syslog", "mysql:x:101:", "ssl-cert:x:110:mysql,www-data", ""].join("\n");

describe("passwd", () => {
  test("passwdEntry finds a uid's line and skips malformed ones", () => {
    expect(passwdEntry(PASSWD, 33)).toEqual({ name: "www-data", gid: 33, home: "/var/www" });
    expect(passwdEntry(PASSWD, 100)).toEqual({ name: "mysql", gid: 101, home: "/nonexistent" });
    expect(passwdEntry(PASSWD, 4242)).toBeNull();
  });

  test("groupsOf lists the groups naming a user as a member", () => {
    expect(groupsOf(GROUP, "www-data")).toEqual([4, 110]);
    expect(groupsOf(GROUP, "nobody")).toEqual([]);
  });

  test("accountOf: the uid's group by default, the given one otherwise; groups from /etc/group; unknown uids get group 0 and home /", () => {
    expect(accountOf(33, null, PASSWD, GROUP)).toEqual({ name: "www-data", gid: 33, home: "/var/www", groups: [33, 4, 110] });
    expect(accountOf(100, 7, PASSWD, GROUP)).toEqual({ name: "mysql", gid: 7, home: "/nonexistent", groups: [7, 110] });
    expect(accountOf(4242, null, PASSWD, GROUP)).toEqual({ name: null, gid: 0, home: "/", groups: [0] });
    expect(accountOf(4242, 4242, "", "")).toEqual({ name: null, gid: 4242, home: "/", groups: [4242] });
  });
});
