import { describe, expect, test } from "bun:test";
import { certInfo, createCa, issueHostCertificate, keyMatchesCertificate, makeCrl, verifyCrl, verifyHostCertificate } from "./ca.ts";
import { x509 } from "./x509.ts";

describe("cluster CA", async () => {
  const ca = await createCa("test");
  const other = await createCa("other");

  test("issues host certificates with the host's name and addresses, signed by the CA", async () => {
    const h = await issueHostCertificate(ca, "alpha", ["10.213.1.2", "alpha.lan"]);
    const info = await verifyHostCertificate(h.certPem, ca.certPem);
    expect(info.name).toBe("alpha");
    expect(info.addresses).toEqual(["10.213.1.2"]);
    expect(info.serial).toBe(h.serial);
    const san = new x509.X509Certificate(h.certPem).getExtension(x509.SubjectAlternativeNameExtension)!;
    expect(san.names.items.map((n) => `${n.type}:${n.value}`)).toEqual(["dns:alpha", "ip:10.213.1.2", "dns:alpha.lan"]);
    expect(await keyMatchesCertificate(h.keyPem, h.certPem)).toBe(true);
  });

  test("refuses a certificate of another CA, an expired one, and a key of another certificate", async () => {
    const foreign = await issueHostCertificate(other, "mallory", []);
    await expect(verifyHostCertificate(foreign.certPem, ca.certPem)).rejects.toThrow("not signed by the bundle's CA");
    const old = await issueHostCertificate(ca, "old", [], { notBefore: new Date(Date.now() - 3 * 86400e3), notAfter: new Date(Date.now() - 86400e3) });
    await expect(verifyHostCertificate(old.certPem, ca.certPem)).rejects.toThrow("not valid now");
    const a = await issueHostCertificate(ca, "a", []);
    const b = await issueHostCertificate(ca, "b", []);
    expect(await keyMatchesCertificate(a.keyPem, b.certPem)).toBe(false);
    expect(certInfo(new x509.X509Certificate(a.certPem)).serial).not.toBe(certInfo(new x509.X509Certificate(b.certPem)).serial);
  });

  test("a revocation list names revoked serials, is checked against the CA, and orders by time", async () => {
    const a = await issueHostCertificate(ca, "a", []);
    const t1 = new Date(Date.now() - 1000);
    const crl = await makeCrl(ca, [{ serial: a.serial, at: t1 }], t1);
    expect(crl.startsWith("-----BEGIN X509 CRL-----")).toBe(true);
    const info = await verifyCrl(crl, ca.certPem);
    expect([...info.serials]).toEqual([a.serial]);
    expect(Math.abs(info.thisUpdate.getTime() - t1.getTime())).toBeLessThan(1000);
    await expect(verifyCrl(crl, other.certPem)).rejects.toThrow("not signed by this cluster's CA");
    await expect(verifyCrl("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", ca.certPem)).rejects.toThrow("not a valid X.509 CRL");
    const empty = await verifyCrl(await makeCrl(ca, []), ca.certPem);
    expect(empty.serials.size).toBe(0);
  });
});
